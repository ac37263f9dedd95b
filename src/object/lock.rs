//! Which process has which object: one byte-range lock per object in the
//! store's `locks` file, all through one descriptor per store.
//!
//! Round 1 held `flock` on each open object's directory, one descriptor
//! per live object. Here the store opens `locks` once, and an object's
//! lock is an exclusive one-byte open-file-description lock (Linux
//! `F_OFD_SETLK`) at an offset taken from its id. Like `flock`, such a
//! lock belongs to the open file, so it conflicts with another `Store` on
//! the same directory in this process as well as with other processes,
//! and the kernel drops it when the process dies. Inside one `Store`, the
//! `held` set refuses a second lock on the same object, which the kernel
//! would grant to the same open file.
//!
//! The offset is 62 bits of the id (a keyed hash of the name), so two
//! objects share a byte with odds of about n² / 2⁶³: for a million
//! objects, 1 in 10 million. Two such objects would only refuse to be open
//! in two processes at once; they are never open through one lock.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::id::ObjectId;

/// The store's lock file, under the data directory.
pub(crate) const LOCKS_FILE: &str = "locks";

#[cfg(target_os = "linux")]
const SETLK: libc::c_int = libc::F_OFD_SETLK;
// Elsewhere, classic POSIX locks: they do not conflict within a process,
// so two `Store`s of one directory in one process are not kept apart.
#[cfg(not(target_os = "linux"))]
const SETLK: libc::c_int = libc::F_SETLK;

/// The per-store table of object locks.
pub(crate) struct ObjectLocks {
    file: File,
    path: PathBuf,
    held: Mutex<HashSet<ObjectId>>,
}

/// One object's lock, released on drop.
pub(crate) struct ObjectLock {
    locks: Arc<ObjectLocks>,
    id: ObjectId,
}

impl ObjectLocks {
    /// Opens (creating) `data_dir/locks`. The file stays empty: a lock
    /// may lie past its end.
    pub(crate) fn open(data_dir: &Path) -> Result<Arc<ObjectLocks>> {
        let path = data_dir.join(LOCKS_FILE);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Ok(Arc::new(ObjectLocks {
            file,
            path,
            held: Mutex::new(HashSet::new()),
        }))
    }

    /// Takes object `id`'s lock; `None` when this store or another process
    /// holds it.
    pub(crate) fn try_lock(self: &Arc<Self>, id: &ObjectId) -> Result<Option<ObjectLock>> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.contains(id) {
            return Ok(None);
        }
        match self.fcntl(id, libc::F_WRLCK as libc::c_short) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                return Ok(None)
            }
            Err(e) => {
                return Err(Error::io(
                    format!("lock {} in {}", id, self.path.display()),
                    e,
                ))
            }
        }
        held.insert(*id);
        Ok(Some(ObjectLock {
            locks: self.clone(),
            id: *id,
        }))
    }

    fn fcntl(&self, id: &ObjectId, kind: libc::c_short) -> std::io::Result<()> {
        let b = id.as_bytes();
        let start = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) >> 2;
        // SAFETY: an all-zero `flock` is a valid value (l_pid must be 0
        // for OFD locks); the fields that matter are set below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start as libc::off_t;
        fl.l_len = 1;
        // SAFETY: the descriptor is open for as long as `self.file`, and
        // `fl` is a valid `flock` that outlives the call.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), SETLK, &mut fl as *mut libc::flock) };
        if rc == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        // Unlocking a range cannot fail for a lock we hold; if it did, the
        // byte stays locked until the store closes, which only refuses a
        // later open from another process.
        if let Err(e) = self.locks.fcntl(&self.id, libc::F_UNLCK as libc::c_short) {
            tracing::warn!(object = %self.id, error = %e, "could not release an object lock");
        }
        held.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_name(&[n; 32], "x").unwrap()
    }

    #[test]
    fn one_lock_per_object_within_a_store_and_across_stores() {
        let dir = tempfile::tempdir().unwrap();
        let a = ObjectLocks::open(dir.path()).unwrap();
        let b = ObjectLocks::open(dir.path()).unwrap();
        let l1 = a.try_lock(&id(1)).unwrap().expect("free");
        assert!(a.try_lock(&id(1)).unwrap().is_none(), "same store");
        assert!(b.try_lock(&id(1)).unwrap().is_none(), "another open file");
        let l2 = b.try_lock(&id(2)).unwrap().expect("another object is free");
        drop(l1);
        let l3 = b.try_lock(&id(1)).unwrap().expect("released on drop");
        assert!(a.try_lock(&id(2)).unwrap().is_none());
        drop((l2, l3, b));
        assert!(a.try_lock(&id(1)).unwrap().is_some());
        assert!(a.try_lock(&id(2)).unwrap().is_some());
    }
}
