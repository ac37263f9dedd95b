//! Retiring journal files. A file may go once every commit in it is
//! durable in its object's own files: either a checkpoint reported it, or
//! this thread fsyncs the object's WAL, database and directory first.
//! Only files no live process writes are retired: our own sealed files,
//! and those of dead processes, whose lock we can take.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{files, Inner};
use crate::error::{Error, Result};
use crate::id::ObjectId;

/// How often the retire thread looks again when it could not retire
/// anything (a file still in use, or awaiting its fsync).
const RETRY: Duration = Duration::from_millis(500);

pub(super) fn retire_loop(inner: &Inner) {
    loop {
        let candidate = {
            let mut st = inner.lock();
            loop {
                if st.shutdown {
                    return;
                }
                // On a nearly full disk the spare would take the space
                // commits need, and every sealed file should go: its
                // objects' own files hold its commits once they are synced.
                // (statvfs without the lock appends take.)
                drop(st);
                let free = crate::fsutil::free_bytes(&inner.dir);
                st = inner.lock();
                if st.shutdown {
                    return;
                }
                let file_bytes = inner.opts.file_bytes;
                let room_for_spare = free.is_none_or(|f| f >= file_bytes.saturating_mul(2));
                let low = free.is_some_and(|f| {
                    f < file_bytes
                        .saturating_mul(4)
                        .max(crate::fsutil::LOW_SPACE_BYTES * 16)
                });
                let keep = if low { 0 } else { inner.opts.keep_bytes };
                st.low_space = low;
                if st.spare.is_none() && st.active.is_some() && room_for_spare {
                    // A writing process keeps one spare ready, made here
                    // so the commit path never waits for the zeros.
                    drop(st);
                    let spare = files::make_spare(&inner.dir, inner.opts.file_bytes);
                    st = inner.lock();
                    match spare {
                        Ok(p) if st.shutdown => {
                            let _ = std::fs::remove_file(p);
                        }
                        Ok(p) => st.spare = Some(p),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not make a journal spare file");
                            drop(st);
                            std::thread::sleep(RETRY);
                            st = inner.lock();
                        }
                    }
                    continue;
                }
                let total: u64 = st.files.values().map(|f| f.bytes).sum();
                if total > keep {
                    let active = st.active.as_ref().map(|a| a.0);
                    let oldest = st
                        .files
                        .iter()
                        .find(|(g, _)| {
                            Some(**g) != active && !st.pending.iter().any(|p| p.gen == **g)
                        })
                        .map(|(g, f)| (*g, f.path.clone(), f.handle.is_some(), f.objects.clone()));
                    if let Some(c) = oldest {
                        break c;
                    }
                }
                st = inner
                    .retire
                    .wait_timeout(st, RETRY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        };
        let (gen, path, own, objects) = candidate;
        let done = retire_one(inner, &path, own, objects);
        let mut st = inner.lock();
        match done {
            Ok(true) => {
                if let Some(gone) = st.files.remove(&gen) {
                    // Forget what only this file needed, so the map stays
                    // as small as the journal, not the store.
                    for id in gone.objects.keys() {
                        if !st.files.values().any(|f| f.objects.contains_key(id)) {
                            st.synced.remove(id);
                        }
                    }
                }
                inner.counters.retired.fetch_add(1, Ordering::Relaxed);
            }
            // Another process still writes it, or something failed: leave
            // it for later; a failure here never loses a commit, it only
            // keeps the file.
            Ok(false) | Err(_) => {
                drop(st);
                std::thread::sleep(RETRY);
            }
        }
    }
}

/// Retires one file; `Ok(false)` when it belongs to a live process.
fn retire_one(
    inner: &Inner,
    path: &Path,
    own: bool,
    objects: HashMap<ObjectId, (u64, u64)>,
) -> Result<bool> {
    // A dead process's file: take its lock, so that no one else retires or
    // replays it meanwhile, and learn what it holds.
    let (objects, _lock) = if own {
        (objects, None)
    } else {
        let f = match File::options().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", path.display()), e))
            }
        }
        let mut objects = HashMap::new();
        for (h, _, _) in files::index(&f, path)? {
            let slot = objects.entry(h.id).or_insert((h.epoch, h.seq));
            *slot = (*slot).max((h.epoch, h.seq));
        }
        (objects, Some(f))
    };
    for (id, upto) in objects {
        let (synced, fresh) = {
            let st = inner.lock();
            (st.synced.get(&id).copied(), st.fresh.contains(&id))
        };
        if !fresh && synced.is_some_and(|s| s >= upto) {
            continue;
        }
        sync_object(inner, &id)?;
        let mut st = inner.lock();
        let slot = st.synced.entry(id).or_insert(upto);
        *slot = (*slot).max(upto);
    }
    // A dead process's catalog writes did not set our dirty flag.
    if inner.catalog.sync(!own)? {
        inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    }
    remove(inner, path)?;
    Ok(true)
}

/// Makes everything object `id`'s files hold durable: its WAL, its
/// database, its name, its directory (which may hold a new WAL's entry)
/// and the directory's own entry, which an object created without an
/// fsync lacks. An object whose files are gone has nothing left to keep.
pub(super) fn sync_object(inner: &Inner, id: &ObjectId) -> Result<()> {
    let dir = id.dir_under(&inner.objects_root);
    for name in ["db-wal", "db", "name"] {
        let p = dir.join(name);
        match File::open(&p) {
            Ok(f) => {
                crate::fsutil::synced(&p, false, || f.sync_all())
                    .map_err(|e| Error::io(format!("fsync {}", p.display()), e))?;
                inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("open {}", p.display()), e)),
        }
    }
    if dir.is_dir() {
        crate::fsutil::sync_dir(&dir)?;
        inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Some(shard) = dir.parent() {
            crate::fsutil::sync_dir(shard)?;
            inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        }
    }
    inner.lock().fresh.remove(id);
    Ok(())
}

/// Deletes a journal file for good: unlink, then fsync the directory.
pub(super) fn remove(inner: &Inner, path: &Path) -> Result<()> {
    match crate::fsutil::removable(path).and_then(|()| std::fs::remove_file(path)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
    }
    crate::fsutil::sync_dir(&inner.dir)?;
    inner.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
