//! Crash images for [`FaultVfs`](super::FaultVfs): what a power cut may
//! leave of the tracked files.
//!
//! Each tracked file has a live image (the real file) and a durable one.
//! Every write or truncate since the file's last successful sync is kept
//! as a pending record: the bytes it replaced (to undo it) and what it
//! did (to redo it). A sync forgets the file's records, whether SQLite
//! made it (`xSync`) or amber did (`std::fs`, reported through
//! `fsutil`). New directory entries (files SQLite creates, directories
//! amber creates) are pending until their directory is fsynced, by amber
//! or by SQLite's own directory sync on the first sync of a new WAL; so
//! are removals (SQLite deleting a WAL, amber removing a deleted object's
//! files), with the removed file's bytes, and renames, with what the
//! target held.
//!
//! At power-off every file goes back to its durable image. Then either
//! nothing more survives (the harshest image), or, seeded, each pending
//! write survives or not by a coin toss, in any combination (a disk may
//! persist unsynced writes in any order, as redb's crash backend models),
//! and each pending entry may vanish with what it holds. Pending removals
//! and renames are undone (seeded: all but a random prefix, since a
//! journaling file system persists them in order): the file comes back
//! with the bytes it had, less its unsynced writes.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::SplitMix;

/// What one unsynced write or truncate did, and what it replaced.
struct Pending {
    path: PathBuf,
    /// The file's bytes from `off` before (as far as the file reached).
    off: u64,
    old: Vec<u8>,
    old_len: u64,
    redo: Redo,
}

enum Redo {
    Write(Vec<u8>),
    Truncate(u64),
}

/// A new directory entry, and whether its directory was fsynced since.
struct Entry {
    path: PathBuf,
    durable: bool,
}

/// A removal or rename of a file, pending until its directory is fsynced.
enum DirOp {
    /// What the removed file held.
    Removed { path: PathBuf, bytes: Vec<u8> },
    /// What `to` held before `from` replaced it, if it existed.
    Renamed {
        from: PathBuf,
        to: PathBuf,
        old: Option<Vec<u8>>,
    },
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Removed { path, .. } => path.parent(),
            DirOp::Renamed { to, .. } => to.parent(),
        }
    }

    fn path(&self) -> &Path {
        match self {
            DirOp::Removed { path, .. } => path,
            DirOp::Renamed { to, .. } => to,
        }
    }

    /// Undoes it: the removed file comes back, the renamed one goes back.
    fn undo(&self) -> bool {
        match self {
            DirOp::Removed { path, bytes } => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                std::fs::write(path, bytes).is_ok()
            }
            DirOp::Renamed { from, to, old } => {
                let back = std::fs::rename(to, from).is_ok();
                if let Some(old) = old {
                    let _ = std::fs::write(to, old);
                }
                back
            }
        }
    }
}

struct Images {
    pending: Vec<Pending>,
    entries: Vec<Entry>,
    dir_ops: Vec<DirOp>,
}

static IMAGES: Mutex<Images> = Mutex::new(Images {
    pending: Vec::new(),
    entries: Vec::new(),
    dir_ops: Vec::new(),
});

fn images() -> MutexGuard<'static, Images> {
    IMAGES.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a power-off left: unsynced writes and truncates undone, those
/// that survived anyway, new entries that vanished, and removals and
/// renames undone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerOff {
    pub undone: usize,
    pub kept: usize,
    pub vanished: usize,
    pub restored: usize,
}

pub(crate) fn clear() {
    let mut i = images();
    i.pending.clear();
    i.entries.clear();
    i.dir_ops.clear();
}

/// Before a write of `len` bytes at `off` (or a truncate, `len` = the
/// rest): what the file holds there now, and its length.
pub(crate) fn before(
    read: impl FnOnce(&mut [u8]) -> bool,
    off: u64,
    len: u64,
    file_len: u64,
) -> (Vec<u8>, u64) {
    let end = off.saturating_add(len).min(file_len);
    let mut old = vec![0u8; end.saturating_sub(off) as usize];
    if !old.is_empty() && !read(&mut old) {
        old.clear();
    }
    (old, file_len)
}

pub(crate) fn wrote(path: &str, off: u64, (old, old_len): (Vec<u8>, u64), landed: &[u8]) {
    images().pending.push(Pending {
        path: PathBuf::from(path),
        off,
        old,
        old_len,
        redo: Redo::Write(landed.to_vec()),
    });
}

pub(crate) fn truncated(path: &str, size: u64, (old, old_len): (Vec<u8>, u64)) {
    images().pending.push(Pending {
        path: PathBuf::from(path),
        off: size,
        old,
        old_len,
        redo: Redo::Truncate(size),
    });
}

/// A successful sync of `path`: what it covered is durable.
pub(crate) fn file_synced(path: &Path) {
    images().pending.retain(|p| p.path != path);
}

/// `path` is a new entry of its directory.
pub(crate) fn created(path: &Path) {
    images().entries.push(Entry {
        path: path.to_path_buf(),
        durable: false,
    });
}

/// `path` (a file) is about to be removed. A file whose own entry was
/// never durable just goes; otherwise the removal is pending, with the
/// file's bytes, until its directory is fsynced.
pub(crate) fn removing(path: &Path) {
    let mut i = images();
    if let Some(at) = i.entries.iter().position(|e| e.path == path) {
        if !i.entries[at].durable {
            i.entries.remove(at);
            return;
        }
    }
    if let Ok(bytes) = std::fs::read(path) {
        i.dir_ops.push(DirOp::Removed {
            path: path.to_path_buf(),
            bytes,
        });
    }
}

/// `from` is about to be renamed to `to` (in the same directory): pending,
/// with what `to` held, until the directory is fsynced.
pub(crate) fn renaming(from: &Path, to: &Path) {
    images().dir_ops.push(DirOp::Renamed {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        old: std::fs::read(to).ok(),
    });
}

/// A successful fsync of `dir`: its entries and removals so far are
/// durable.
pub(crate) fn dir_synced(dir: &Path) {
    let mut i = images();
    for e in i.entries.iter_mut() {
        if e.path.parent() == Some(dir) {
            e.durable = true;
        }
    }
    // A removal in `dir` is durable now; so is one inside a directory
    // that is gone from `dir` (removed, empty, before this fsync).
    i.dir_ops.retain(|op| {
        let parent = op.dir();
        let under_gone_dir = op.path().starts_with(dir) && !parent.is_some_and(Path::exists);
        parent != Some(dir) && !under_gone_dir
    });
}

/// Puts every tracked file back to its durable image; with `rng`, lets a
/// random subset of the unsynced writes survive and a random subset of
/// the unsynced entries vanish, else makes every unsynced entry vanish.
pub(crate) fn power_off(mut rng: Option<&mut SplitMix>) -> PowerOff {
    let Images {
        pending,
        entries,
        dir_ops,
    } = std::mem::replace(
        &mut *images(),
        Images {
            pending: Vec::new(),
            entries: Vec::new(),
            dir_ops: Vec::new(),
        },
    );
    let mut out = PowerOff {
        undone: pending.len(),
        ..PowerOff::default()
    };
    // Removals and renames first, newest first, so that a file that comes
    // back has its unsynced writes undone below like any other file. They
    // persist in order, as a journaling file system commits them: seeded,
    // a random prefix survives; else none.
    let durable = rng
        .as_deref_mut()
        .map_or(0, |r| r.below(dir_ops.len() as u64 + 1) as usize);
    for op in dir_ops[durable..].iter().rev() {
        out.restored += usize::from(op.undo());
    }
    let open = |p: &Path| std::fs::OpenOptions::new().write(true).open(p).ok();
    for p in pending.iter().rev() {
        if let Some(f) = open(&p.path) {
            let _ = f.write_all_at(&p.old, p.off);
            let _ = f.set_len(p.old_len);
        }
    }
    if let Some(rng) = rng.as_deref_mut() {
        for p in &pending {
            if !rng.chance(500) {
                continue;
            }
            let Some(f) = open(&p.path) else { continue };
            out.kept += 1;
            let _ = match &p.redo {
                Redo::Write(b) => f.write_all_at(b, p.off),
                Redo::Truncate(n) => f.set_len(*n),
            };
        }
    }
    for e in entries.iter().rev().filter(|e| !e.durable) {
        if let Some(rng) = rng.as_deref_mut() {
            if !rng.chance(500) {
                continue;
            }
        }
        let gone = if e.path.is_dir() {
            std::fs::remove_dir_all(&e.path)
        } else {
            std::fs::remove_file(&e.path)
        };
        out.vanished += usize::from(gone.is_ok());
    }
    out.undone -= out.kept;
    out
}
