//! The store journal: one append-only log per store that makes many
//! objects' commits durable with one fsync.
//!
//! An object's commit goes to its own WAL without an fsync (SQLite runs
//! with `synchronous = NORMAL`), and its frames are then appended here as
//! one record. A single sync thread fdatasyncs the journal and resolves
//! the `Local` tickets of every commit appended before that fsync began,
//! whichever object they belong to. So the fsyncs per commit fall as the
//! number of busy objects grows, instead of staying at one.
//!
//! The journal is needed only until an object's own files hold a commit
//! durably: a checkpoint fsyncs the WAL and the database, and retiring a
//! journal file fsyncs the files of every object it names first. After a
//! power cut, `Store::open` replays the records that an object's WAL lost
//! (`object/replay.rs`) before anyone opens it.
//!
//! - `format.rs`: the file header and the record codec.
//! - `files.rs`: naming, creating, scanning and locking journal files.
//! - `retire.rs`: deleting journal files once nothing needs them.

mod files;
pub(crate) mod format;
mod retire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::catalog::Catalog;
use crate::durability::Watermark;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::sqlite::wal::WalCommit;

pub(crate) use files::{ReplayFile, ReplayRecord};

/// The journal directory under the data directory.
pub(crate) const JOURNAL_DIR: &str = "journal";
/// The smallest journal file: a few commits' worth.
const MIN_FILE_BYTES: u64 = 64 << 10;

/// How the store journal is sized. `enabled: false` brings back round 1's
/// per-object WAL fsyncs (kept for one release, for side-by-side figures).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalOptions {
    pub enabled: bool,
    /// A journal file is sealed, and a new one started, past this size.
    pub file_bytes: u64,
    /// Sealed files are retired, oldest first, while the journal is larger
    /// than this. Retiring costs up to three fsyncs per object named in the
    /// file, so a larger journal means fewer of them.
    pub keep_bytes: u64,
    /// Group commit: when the last fdatasync covered more than one commit
    /// (several objects are committing), the sync thread waits up to this
    /// long for as many commits to be pending again before it syncs, so
    /// one fdatasync covers more of them. An idle or single-writer store
    /// never waits. Zero: sync at once.
    pub commit_delay: std::time::Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            enabled: true,
            file_bytes: 32 << 20,
            keep_bytes: 256 << 20,
            commit_delay: std::time::Duration::from_micros(200),
        }
    }
}

impl JournalOptions {
    pub fn disabled() -> Self {
        JournalOptions {
            enabled: false,
            ..JournalOptions::default()
        }
    }

    pub fn with_file_bytes(mut self, bytes: u64) -> Self {
        self.file_bytes = bytes;
        self
    }

    pub fn with_keep_bytes(mut self, bytes: u64) -> Self {
        self.keep_bytes = bytes;
        self
    }

    pub fn with_commit_delay(mut self, delay: std::time::Duration) -> Self {
        self.commit_delay = delay;
        self
    }
}

/// Counters that show how much the journal shares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JournalStats {
    /// fsyncs and fdatasyncs amber issued for the journal: of the journal
    /// file, of its directory, and of objects' files when a journal file
    /// retired. SQLite's own checkpoint fsyncs are not in it.
    pub fsyncs: u64,
    /// Commits whose `Local` durability those fsyncs provided.
    pub commits: u64,
    /// Record bytes appended.
    pub bytes: u64,
    /// Journal files retired (deleted).
    pub retired_files: u64,
}

#[derive(Default)]
struct Counters {
    fsyncs: AtomicU64,
    commits: AtomicU64,
    bytes: AtomicU64,
    retired: AtomicU64,
}

/// A commit appended but not yet covered by an fsync.
struct Pending {
    gen: u64,
    mark: Arc<Watermark>,
    seq: u64,
}

/// One journal file this process wrote or may retire.
struct FileInfo {
    path: PathBuf,
    bytes: u64,
    /// Per object named in the file: the highest (epoch, seq) it holds.
    objects: HashMap<ObjectId, (u64, u64)>,
    /// Our own files: the handle appends and fsyncs go through, which also
    /// holds the file's lock.
    /// `None` for a dead process's file (of this boot), whose lock the
    /// retire thread takes and whose objects it reads then.
    handle: Option<Arc<File>>,
    dir_synced: bool,
    /// How many bytes of it an fsync has covered; each record written
    /// carries it (format version 2).
    synced_to: u64,
}

struct State {
    active: Option<(u64, Arc<File>, u64)>,
    pending: Vec<Pending>,
    files: BTreeMap<u64, FileInfo>,
    /// Per object: the highest (epoch, seq) durable in its own files.
    synced: HashMap<ObjectId, (u64, u64)>,
    /// Objects created without an fsync (`Journal::created`) whose
    /// directory entries no fsync has covered yet: a checkpoint syncs
    /// their WAL and database but not their directory's entry, so they are
    /// synced whole before a file that holds their records goes.
    fresh: HashSet<ObjectId>,
    failed: Option<Error>,
    shutdown: bool,
    /// A zero-filled file ready to become the next journal file.
    spare: Option<PathBuf>,
    /// The active file grows by appending (no spare was ready): it is
    /// sealed as soon as one is, since appends there cost a metadata
    /// commit per fdatasync.
    active_grows: bool,
    /// The disk is nearly full (the retire thread checks): the active file
    /// is sealed early, so that it can retire and give its space back.
    low_space: bool,
}

struct Inner {
    dir: PathBuf,
    objects_root: PathBuf,
    opts: JournalOptions,
    /// Synced before a file goes: replay of the file would put back the
    /// catalog rows of the objects it names.
    catalog: Arc<Catalog>,
    boot: format::BootId,
    state: Mutex<State>,
    /// Wakes the sync thread.
    work: Condvar,
    /// Wakes the retire thread.
    retire: Condvar,
    counters: Counters,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) struct Journal {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

impl Journal {
    /// Opens the journal of the store at `data_dir`: finds the files that
    /// earlier processes left and starts the sync and retire threads. No
    /// file is created until the first commit. Returns the files from an
    /// earlier boot, which the caller must replay and then hand to
    /// `replayed`.
    pub(crate) fn open(
        data_dir: &std::path::Path,
        objects_root: PathBuf,
        opts: JournalOptions,
        catalog: Arc<Catalog>,
    ) -> Result<(Journal, Vec<ReplayFile>)> {
        if opts.file_bytes < MIN_FILE_BYTES || opts.keep_bytes < opts.file_bytes {
            return Err(Error::invalid(format!(
                "journal file_bytes must be at least {MIN_FILE_BYTES} and keep_bytes at least \
                 file_bytes (got {} and {})",
                opts.file_bytes, opts.keep_bytes
            )));
        }
        let dir = data_dir.join(JOURNAL_DIR);
        let boot = files::boot_id();
        let found = files::scan(&dir, &boot)?;
        let mut state = State {
            active: None,
            pending: Vec::new(),
            files: BTreeMap::new(),
            synced: HashMap::new(),
            fresh: HashSet::new(),
            failed: None,
            shutdown: false,
            spare: None,
            active_grows: false,
            low_space: false,
        };
        for f in found.same_boot {
            state.files.insert(
                f.gen,
                FileInfo {
                    path: f.path,
                    bytes: f.bytes,
                    objects: HashMap::new(),
                    handle: None,
                    dir_synced: true,
                    synced_to: 0,
                },
            );
        }
        let inner = Arc::new(Inner {
            dir,
            objects_root,
            opts,
            catalog,
            boot,
            state: Mutex::new(state),
            work: Condvar::new(),
            retire: Condvar::new(),
            counters: Counters::default(),
        });
        let sync = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("amber-journal-sync".into())
                .spawn(move || sync_loop(&inner))
                .map_err(|e| Error::io("spawn the journal sync thread", e))?
        };
        let retire = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("amber-journal-retire".into())
                .spawn(move || retire::retire_loop(&inner))
                .map_err(|e| Error::io("spawn the journal retire thread", e))?
        };
        Ok((
            Journal {
                inner,
                threads: vec![sync, retire],
            },
            found.earlier_boot,
        ))
    }

    /// Appends the commits `first_seq..` of object `id` and arranges for
    /// `mark` to reach the last of them once an fsync covers it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append(
        &self,
        mark: &Arc<Watermark>,
        id: &ObjectId,
        epoch: u64,
        first_seq: u64,
        time_ms: u64,
        commits: &[WalCommit],
    ) -> Result<()> {
        let mut buf = Vec::new();
        let mut unsealed = Vec::with_capacity(commits.len());
        for (i, c) in commits.iter().enumerate() {
            unsealed.push(
                format::encode(id, epoch, first_seq + i as u64, time_ms, c, &mut buf)
                    .map_err(|e| Error::io("encode a journal record", e))?,
            );
        }
        let last = first_seq + commits.len() as u64 - 1;
        let inner = &self.inner;
        let mut st = inner.lock();
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if st.shutdown {
            return Err(Error::new(ErrorKind::Closed, "store is shutting down"));
        }
        let (gen, file, end) = active_file(inner, &mut st, buf.len() as u64)?;
        let synced_to = st.files.get(&gen).map_or(0, |f| f.synced_to);
        format::seal(&mut buf, unsealed, synced_to);
        let written = crate::fsutil::fault_point(true, || inner.dir.join(files::name(gen)))
            .and_then(|()| file.write_all_at(&buf, end));
        if let Err(e) = written {
            // Nothing moved: the next record overwrites whatever part of
            // this one reached the file.
            return Err(Error::io(
                format!("append to journal file {}", files::name(gen)),
                e,
            ));
        }
        let len = buf.len() as u64;
        st.active = Some((gen, file, end + len));
        let info = st.files.get_mut(&gen).expect("active file is listed");
        info.bytes = end + len;
        let slot = info.objects.entry(*id).or_insert((epoch, last));
        *slot = (*slot).max((epoch, last));
        st.pending.push(Pending {
            gen,
            mark: mark.clone(),
            seq: last,
        });
        drop(st);
        inner.counters.bytes.fetch_add(len, Ordering::Relaxed);
        inner.work.notify_one();
        Ok(())
    }

    /// Records that object `id` was just created without an fsync; its
    /// creation commit is about to be appended.
    pub(crate) fn created(&self, id: &ObjectId) {
        self.inner.lock().fresh.insert(*id);
    }

    /// Records that object `id`'s own files hold every commit up to
    /// (`epoch`, `seq`) durably (a checkpoint just fsynced them).
    pub(crate) fn synced(&self, id: &ObjectId, epoch: u64, seq: u64) {
        let mut st = self.inner.lock();
        if !st.files.values().any(|f| f.objects.contains_key(id)) {
            return;
        }
        let slot = st.synced.entry(*id).or_insert((epoch, seq));
        *slot = (*slot).max((epoch, seq));
    }

    /// Whether this process knows that object `id`'s commits up to
    /// (`epoch`, `seq`) are in the journal (appended to a live file) or
    /// durable in the object's own files.
    pub(crate) fn covers(&self, id: &ObjectId, epoch: u64, seq: u64) -> bool {
        let st = self.inner.lock();
        st.synced.get(id).is_some_and(|s| *s >= (epoch, seq))
            || st
                .files
                .values()
                .any(|f| f.objects.get(id).is_some_and(|o| *o >= (epoch, seq)))
    }

    /// After the caller replayed every object of `file` (from an earlier
    /// boot): makes those objects' files durable and deletes the file.
    pub(crate) fn replayed(&self, file: ReplayFile) -> Result<()> {
        let objects = file.objects().collect::<Vec<_>>();
        for id in &objects {
            retire::sync_object(&self.inner, id)?;
        }
        retire::remove(&self.inner, &file.path)?;
        self.inner.counters.retired.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn stats(&self) -> JournalStats {
        let c = &self.inner.counters;
        JournalStats {
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            commits: c.commits.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retired_files: c.retired.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.inner.lock().shutdown = true;
        self.inner.work.notify_all();
        self.inner.retire.notify_all();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // The last store handle may be dropped by a ticket callback
            // running on the sync thread; a thread cannot join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        if let Some(spare) = self.inner.lock().spare.take() {
            let _ = std::fs::remove_file(spare);
        }
    }
}

/// The file to append `len` bytes to: the active one, or a new one when
/// there is none or it is full.
fn active_file(inner: &Inner, st: &mut State, len: u64) -> Result<(u64, Arc<File>, u64)> {
    if let Some((gen, file, end)) = &st.active {
        let fresh = *end == format::FILE_HEADER as u64;
        let swap = (st.active_grows && st.spare.is_some())
            || (st.low_space && *end > crate::fsutil::LOW_SPACE_BYTES);
        if fresh || (end + len <= inner.opts.file_bytes && !swap) {
            return Ok((*gen, file.clone(), *end));
        }
        // Sealed: the retire thread may take it once it is old enough.
        st.active = None;
        inner.retire.notify_one();
    }
    let next = st.files.keys().next_back().map_or(0, |g| g + 1);
    let spare = st.spare.take();
    st.active_grows = spare.is_none();
    // The retire thread makes the next spare.
    inner.retire.notify_one();
    let (gen, path, file) = files::create(&inner.dir, next, &inner.boot, spare)?;
    let file = Arc::new(file);
    st.files.insert(
        gen,
        FileInfo {
            path,
            bytes: format::FILE_HEADER as u64,
            objects: HashMap::new(),
            handle: Some(file.clone()),
            dir_synced: false,
            synced_to: 0,
        },
    );
    st.active = Some((gen, file.clone(), format::FILE_HEADER as u64));
    Ok((gen, file, format::FILE_HEADER as u64))
}

/// The sync thread: one fdatasync for everything appended so far, then
/// every ticket it covers resolves.
fn sync_loop(inner: &Inner) {
    // Commits the last fdatasync covered: the group worth waiting for.
    let mut last_batch = 0usize;
    loop {
        let (batch, targets) = {
            let mut st = inner.lock();
            while st.pending.is_empty() && !st.shutdown {
                st = inner.work.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.pending.is_empty() {
                return;
            }
            let delay = inner.opts.commit_delay;
            if last_batch > 1 && !delay.is_zero() {
                let until = std::time::Instant::now() + delay;
                while st.pending.len() <= last_batch && !st.shutdown {
                    let now = std::time::Instant::now();
                    if now >= until {
                        break;
                    }
                    st = inner
                        .work
                        .wait_timeout(st, until - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            last_batch = st.pending.len();
            let batch = std::mem::take(&mut st.pending);
            // (gen, handle, whether its directory entry needs an fsync,
            // its length now, which the fsync will cover)
            let mut targets: Vec<(u64, Arc<File>, bool, u64)> = Vec::new();
            for p in &batch {
                if targets.iter().any(|t| t.0 == p.gen) {
                    continue;
                }
                let info = &st.files[&p.gen];
                let handle = info
                    .handle
                    .clone()
                    .expect("pending records are in our files");
                targets.push((p.gen, handle, !info.dir_synced, info.bytes));
            }
            (batch, targets)
        };
        let mut result = Ok(());
        for (gen, file, dir_first, covers) in &targets {
            result = crate::fsutil::fault_point(false, || inner.dir.join(files::name(*gen)))
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io(format!("fsync journal file {}", files::name(*gen)), e));
            inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            if result.is_ok() && *dir_first {
                // The new file's directory entry must survive a power cut
                // before anything in it counts as durable.
                result = crate::fsutil::sync_dir(&inner.dir);
                inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                if result.is_ok() {
                    if let Some(info) = inner.lock().files.get_mut(gen) {
                        info.dir_synced = true;
                    }
                }
            }
            if result.is_err() {
                break;
            }
            if let Some(info) = inner.lock().files.get_mut(gen) {
                info.synced_to = info.synced_to.max(*covers);
            }
        }
        match result {
            Ok(()) => {
                inner
                    .counters
                    .commits
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for p in batch {
                    p.mark.advance_local(p.seq);
                }
            }
            Err(e) => {
                // After a failed fsync the kernel may have dropped the
                // dirty pages: nothing written so far can be trusted to be
                // durable, so the journal stops taking commits.
                let rest = {
                    let mut st = inner.lock();
                    st.failed = Some(e.clone());
                    std::mem::take(&mut st.pending)
                };
                for p in batch.into_iter().chain(rest) {
                    p.mark.fail(e.clone());
                }
            }
        }
    }
}
