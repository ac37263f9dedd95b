//! Journal files on disk: names, creation, the boot they belong to, and
//! reading them back.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::format::{self, BootId, Peek, RecordHead};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::sqlite::wal::WalCommit;

const EXT: &str = "jnl";

pub(super) fn name(gen: u64) -> String {
    format!("{gen:016x}.{EXT}")
}

fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".jnl")?;
    (stem.len() == 16)
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
}

/// This boot's identity (Linux's `boot_id`); all zeros where the kernel
/// does not say, which makes every file look like an earlier boot's, so
/// replay always runs: slower, never wrong.
pub(super) fn boot_id() -> BootId {
    let mut id = [0u8; 16];
    let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return id;
    };
    let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    if hex.len() != 32 {
        return [0u8; 16];
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).expect("hex digits");
        id[i] = u8::from_str_radix(s, 16).expect("hex digits");
    }
    id
}

/// Creates journal file `gen` (or the next free one), with its header
/// written and its lock held through the returned handle. With a `spare`
/// (a zero-filled file, see `make_spare`), the file takes its place, so
/// that appends overwrite allocated blocks and an fdatasync need not
/// commit file-system metadata.
pub(super) fn create(
    dir: &Path,
    mut gen: u64,
    boot: &BootId,
    mut spare: Option<PathBuf>,
) -> Result<(u64, PathBuf, File)> {
    crate::fsutil::create_dir_durable(dir)?;
    loop {
        let path = dir.join(name(gen));
        let opened = match spare.as_deref() {
            // A hard link fails if the name is taken, where a rename would
            // silently replace another process's file.
            Some(s) => std::fs::hard_link(s, &path).and_then(|()| {
                std::fs::remove_file(s)?;
                File::options().read(true).write(true).open(&path)
            }),
            None => File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Another process took this number.
                gen += 1;
                continue;
            }
            Err(e) if spare.is_some() => {
                tracing::warn!(error = %e, "journal spare file unusable; creating a plain one");
                spare = None;
                continue;
            }
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        };
        file.try_lock()
            .map_err(|e| Error::io(format!("lock {}", path.display()), io::Error::other(e)))?;
        file.write_all_at(&format::file_header(boot), 0)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        return Ok((gen, path, file));
    }
}

/// This process's spare file: zero-filled to `bytes`, fsynced, and its
/// directory entry durable, ready to become the next journal file.
pub(super) fn make_spare(dir: &Path, bytes: u64) -> Result<PathBuf> {
    // Unique per call: two stores of one process on one directory must
    // never write zeros into a file the other already appends to.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    crate::fsutil::create_dir_durable(dir)?;
    let path = dir.join(format!("spare-{}-{n}.tmp", std::process::id()));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(ctx("create"), e))?;
    let zeros = vec![0u8; 1 << 20];
    let filled = (|| {
        let mut off = 0u64;
        while off < bytes {
            let n = (bytes - off).min(zeros.len() as u64) as usize;
            f.write_all_at(&zeros[..n], off)
                .map_err(|e| Error::io(ctx("write"), e))?;
            off += n as u64;
        }
        f.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
        crate::fsutil::sync_dir(dir)
    })();
    if let Err(e) = filled {
        // A half-made spare on a full disk would hold the space commits
        // need.
        drop(f);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Removes spare files of processes that are gone.
fn remove_stale_spares(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("spare-")?.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A journal file seen at open, written earlier in this boot.
pub(super) struct SameBoot {
    pub(super) gen: u64,
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
}

pub(super) struct Found {
    pub(super) same_boot: Vec<SameBoot>,
    pub(super) earlier_boot: Vec<ReplayFile>,
}

/// Lists the journal files in `dir`. Files from an earlier boot are
/// locked (waiting for another process that is replaying them) and read
/// whole; files from this boot are only listed.
pub(super) fn scan(dir: &Path, boot: &BootId) -> Result<Found> {
    let mut found = Found {
        same_boot: Vec::new(),
        earlier_boot: Vec::new(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    remove_stale_spares(dir);
    let mut names: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let gen = parse_name(e.file_name().to_str()?)?;
            Some((gen, e.path()))
        })
        .collect();
    names.sort();
    for (gen, path) in names {
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            // Retired by another process since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let mut h = [0u8; format::FILE_HEADER];
        let header = match file.read_exact_at(&mut h, 0) {
            Ok(()) => format::read_header(&h),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if header.is_none() && h[..8] == format::MAGIC && version > format::VERSION {
            // A newer amber's journal: its records may be acknowledged
            // commits, so neither skip nor retire it.
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "journal file {} has format version {}; this amber reads version {}",
                    path.display(),
                    version,
                    format::VERSION
                ),
            ));
        }
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        match header {
            Some((_, b)) if b == *boot && b != [0u8; 16] => {
                found.same_boot.push(SameBoot { gen, path, bytes })
            }
            // A file whose header never reached the disk holds nothing
            // durable; it is retired like any other, after replay.
            _ => {
                file.lock()
                    .map_err(|e| Error::io(format!("lock {}", path.display()), e))?;
                if file.metadata().map(|m| m.nlink()).unwrap_or(0) == 0 {
                    // Another process replayed and retired it while we
                    // waited for the lock.
                    continue;
                }
                found
                    .earlier_boot
                    .push(ReplayFile::read(path, file, header.is_some())?);
            }
        }
    }
    Ok(found)
}

/// Reads the valid records of `file` (after its header): the object each
/// names, with where its record lies. Stops at the first torn or invalid
/// record: everything from there on was never fsynced.
pub(super) fn index(file: &File, path: &Path) -> Result<Vec<(RecordHead, u64, usize)>> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .len();
    let mut out = Vec::new();
    let Some(version) = version_of(file) else {
        // No header reached the disk: nothing in the file was durable.
        return Ok(out);
    };
    let mut off = format::FILE_HEADER as u64;
    let mut buf = Vec::new();
    while off < len {
        let want = (len - off).min(1 << 20) as usize;
        buf.resize(want, 0);
        file.read_exact_at(&mut buf, off)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let mut at = 0usize;
        loop {
            match format::peek(&buf[at..], version) {
                Peek::Record(h, n) => {
                    out.push((h, off + at as u64, n));
                    at += n;
                }
                Peek::NeedMore(n) => {
                    if off + (at + n) as u64 > len {
                        return Ok(out);
                    }
                    if at == 0 {
                        // One record larger than the window: read it whole.
                        buf.resize(n, 0);
                        file.read_exact_at(&mut buf, off)
                            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
                        continue;
                    }
                    break;
                }
                Peek::Invalid => {
                    check_torn(file, path, version, &buf[at..], off + at as u64, len)?;
                    return Ok(out);
                }
            }
        }
        off += at as u64;
    }
    Ok(out)
}

/// The format version in `file`'s header, if it has one this amber reads.
fn version_of(file: &File) -> Option<u32> {
    let mut h = [0u8; format::FILE_HEADER];
    file.read_exact_at(&mut h, 0).ok()?;
    format::read_header(&h).map(|(v, _)| v)
}

/// An invalid record at `at` is a torn tail, written after the last fsync
/// (whose writes may have reached the disk in any order), unless bytes
/// already durable changed: then what follows must not be dropped in
/// silence. Version 2 knows which: a valid record further on that was
/// written once the file was fsynced past `at` proves the damage durable.
/// Version 1 takes any valid record right after as that proof. Either
/// finds the next record through the damaged one's length field, so
/// damage that left it intact is caught.
fn check_torn(
    file: &File,
    path: &Path,
    version: u32,
    here: &[u8],
    at: u64,
    len: u64,
) -> Result<()> {
    if here.len() < format::RECORD_HEADER {
        return Ok(());
    }
    let body = u64::from(u32::from_le_bytes(here[..4].try_into().expect("4 bytes")));
    let mut next = at + format::RECORD_HEADER as u64 + body;
    if body == 0 {
        return Ok(());
    }
    while let Some((h, n)) = record_at(file, version, next, len) {
        if version < 2 || h.synced_to > at {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "journal file {} has a damaged record at offset {at} followed by valid ones; \
                     commits after it may be lost (keep the file and restore the objects it \
                     names from the bucket)",
                    path.display()
                ),
            ));
        }
        next += n as u64;
    }
    Ok(())
}

/// The valid record at `off`, if there is one.
fn record_at(file: &File, version: u32, off: u64, len: u64) -> Option<(RecordHead, usize)> {
    if off + format::RECORD_HEADER as u64 > len {
        return None;
    }
    let mut head = [0u8; format::RECORD_HEADER];
    file.read_exact_at(&mut head, off).ok()?;
    let need = format::RECORD_HEADER as u64
        + u64::from(u32::from_le_bytes(head[..4].try_into().expect("4 bytes")));
    if need > len - off || need > 1 << 30 {
        return None;
    }
    let mut rec = vec![0u8; need as usize];
    file.read_exact_at(&mut rec, off).ok()?;
    match format::peek(&rec, version) {
        Peek::Record(h, n) => Some((h, n)),
        _ => None,
    }
}

/// One record to replay: what it says and where it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayRecord {
    pub(crate) head: RecordHead,
    offset: u64,
    len: usize,
}

/// A journal file from an earlier boot, locked, with its records indexed
/// by object. Dropping it releases the lock.
pub(crate) struct ReplayFile {
    pub(super) path: PathBuf,
    file: File,
    version: u32,
    records: HashMap<ObjectId, Vec<ReplayRecord>>,
    /// The largest `synced_to` among its records: an fsync covered at
    /// least this much of the file.
    vouched_to: u64,
}

impl ReplayFile {
    fn read(path: PathBuf, file: File, has_header: bool) -> Result<ReplayFile> {
        let mut records: HashMap<ObjectId, Vec<ReplayRecord>> = HashMap::new();
        if has_header {
            for (head, offset, len) in index(&file, &path)? {
                records
                    .entry(head.id)
                    .or_default()
                    .push(ReplayRecord { head, offset, len });
            }
        }
        let vouched_to = records
            .values()
            .flatten()
            .map(|r| r.head.synced_to)
            .max()
            .unwrap_or(0);
        Ok(ReplayFile {
            path,
            version: version_of(&file).unwrap_or(format::VERSION),
            file,
            records,
            vouched_to,
        })
    }

    /// Whether a later record of the file proves `r` was fsynced.
    pub(crate) fn vouched(&self, r: &ReplayRecord) -> bool {
        r.offset + r.len as u64 <= self.vouched_to
    }

    /// The objects this file holds commits of.
    pub(crate) fn objects(&self) -> impl Iterator<Item = ObjectId> + '_ {
        self.records.keys().copied()
    }

    pub(crate) fn records(&self, id: &ObjectId) -> &[ReplayRecord] {
        self.records.get(id).map_or(&[], Vec::as_slice)
    }

    /// Reads one record's commit back.
    pub(crate) fn commit(&self, r: &ReplayRecord) -> Result<WalCommit> {
        let mut buf = vec![0u8; r.len];
        self.file
            .read_exact_at(&mut buf, r.offset)
            .map_err(|e| Error::io(format!("read {}", self.path.display()), e))?;
        match format::decode(&buf, self.version) {
            Some((_, c)) => Ok(c),
            None => Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "journal record at {} in {} changed while it was replayed",
                    r.offset,
                    self.path.display()
                ),
            )),
        }
    }
}
