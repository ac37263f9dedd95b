//! Deleting an object for good.
//!
//! The delete is one fsynced catalog transaction: the object's row goes
//! and a tombstone takes its place, naming the epoch the name starts at if
//! it is reused. Everything after that is cleanup, redone by the next
//! `Store::open` or `open_object` if a crash cuts it short:
//! - the object's local directory is removed;
//! - its bucket history (every epoch below the tombstone's) is removed at
//!   once with `BucketHistory::Purge`, or else once the retention window
//!   has passed, by the first `Store::open` after that; until then the
//!   deleted object stays restorable by name (`Store::restore`);
//! - replay after a power cut skips the journal records of its old epochs,
//!   so it cannot come back.

use super::Store;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::object::{finish_local, local_position, remove_local, Shared};
use crate::pitr::{gc::GC_GRACE, purge_object};

/// What `Store::delete_object` does with the object's bucket history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BucketHistory {
    /// Kept until the retention window has passed, so the deleted object
    /// can still be restored by name.
    #[default]
    Keep,
    /// Deleted now.
    Purge,
}

impl Store {
    /// Deletes the object called `name`: its local files at once, its
    /// bucket history as `history` says. A later `open_object(name)`
    /// starts a fresh, empty object. Returns `false` when there was no
    /// such object (a purge of an earlier delete's history still runs).
    /// The object must not be open (`ErrorKind::Locked`). Not in cluster
    /// mode yet.
    pub fn delete_object(&self, name: &str, history: BucketHistory) -> Result<bool> {
        let id = self.id_from_name(name)?;
        let shared = &self.shared;
        if shared.cluster.is_some() {
            return Err(Error::invalid(
                "deleting objects is not supported in cluster mode yet",
            ));
        }
        let _guard = shared.claim(id, name)?;
        let dir = shared.object_dir(&id);
        let cat = &shared.catalog;
        let tomb = cat.tombstone(&id)?;
        let exists = cat.get(&id)?.is_some() || dir.join("db").exists();
        if !exists {
            if let (BucketHistory::Purge, Some(t)) = (history, tomb) {
                if !t.purged {
                    purge_bucket(shared, &id, t.next_epoch)?;
                }
            }
            return Ok(false);
        }
        let Some(lock) = shared.locks.try_lock(&id)? else {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("object `{name}` is open in another process"),
            ));
        };
        let epoch = local_position(&dir)?.map_or(0, |b| b.epoch());
        let next_epoch = (epoch + 1).max(tomb.map_or(0, |t| t.next_epoch));
        cat.delete(&id, next_epoch, shared.config.clock.now_ms())?;
        remove_local(&dir)?;
        drop(lock);
        cat.set_local_gone(&id)?;
        if let Some(sh) = &shared.shipper {
            sh.deleted(id, history == BucketHistory::Purge);
        }
        if history == BucketHistory::Purge || shared.shipper.is_none() {
            purge_bucket(shared, &id, next_epoch)?;
        }
        Ok(true)
    }
}

/// Removes the bucket history of a deleted object below `next_epoch`.
fn purge_bucket(shared: &Shared, id: &ObjectId, next_epoch: u64) -> Result<()> {
    if let Some(sh) = &shared.shipper {
        let id2 = *id;
        let n = sh.on_bucket(move |b| async move { purge_object(&b, &id2, next_epoch).await })?;
        tracing::info!(object = %id, keys = n, "purged a deleted object's bucket history");
    }
    shared.catalog.set_purged(id, next_epoch)
}

/// At `Store::open`: finishes deletes a crash cut short, and purges the
/// bucket history of deletes whose retention window has passed.
pub(super) fn finish_deletes(shared: &Shared) -> Result<()> {
    // Without a bucket there is nothing to wait for.
    let purge_by = match shared.shipper {
        None => u64::MAX,
        Some(_) => {
            let window = (shared.config.pitr.retention + GC_GRACE).as_millis() as u64;
            shared.config.clock.now_ms().saturating_sub(window)
        }
    };
    for (id, t) in shared.catalog.unfinished_deletes(purge_by)? {
        if !t.local_gone {
            finish_local(shared, &id, &t)?;
        }
        if !t.purged && t.deleted_ms <= purge_by {
            if let Err(e) = purge_bucket(shared, &id, t.next_epoch) {
                // Retried at the next open; storage, not data, is at stake.
                tracing::warn!(object = %id, error = %e, "could not purge a deleted object's history");
            }
        }
    }
    Ok(())
}
