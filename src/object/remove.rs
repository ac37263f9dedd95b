//! Removing a deleted object's local files (`Store::delete_object`), and
//! finishing a removal a crash cut short.

use std::path::Path;

use super::Shared;
use crate::catalog::Tombstone;
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;

/// Removes a deleted object's directory: every file in it, the directory,
/// then an fsync of the shard directory. The caller holds its lock.
pub(crate) fn remove_local(dir: &Path) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let p = entry.path();
        match fsutil::removable(&p).and_then(|()| std::fs::remove_file(&p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", p.display()), e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", dir.display()), e)),
    }
    match dir.parent() {
        Some(shard) => fsutil::sync_dir(shard),
        None => Ok(()),
    }
}

/// Removes what a cut-short delete left of object `id` locally, unless
/// its name was reused since: its row is back, or its database is of the
/// tombstone's epoch or later (a new object whose row a cut took).
pub(crate) fn finish_local(shared: &Shared, id: &ObjectId, t: &Tombstone) -> Result<()> {
    if shared.catalog.get(id)?.is_some() {
        return shared.catalog.set_local_gone(id);
    }
    let dir = shared.object_dir(id);
    if dir.is_dir() {
        let Some(_lock) = shared.locks.try_lock(id)? else {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("deleted object {id} is open in another process"),
            ));
        };
        let reused = super::local_position(&dir)?.is_some_and(|b| b.epoch() >= t.next_epoch);
        if reused {
            return Ok(());
        }
        remove_local(&dir)?;
    }
    if !t.local_gone {
        shared.catalog.set_local_gone(id)?;
    }
    Ok(())
}
