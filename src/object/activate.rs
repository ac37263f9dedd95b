//! Cluster mode: what opening an object does before its database opens.
//! Claim it (or learn who has it); for a new epoch, decide what the object
//! starts from: the bucket's latest commit, a point-in-time target, or the
//! local files when they predate cluster mode and are not behind.

use std::path::Path;
use std::sync::Arc;

use super::restore::{
    discard_restore_marker, local_position, pending_restore, restore_into, set_aside_local,
};
use super::Shared;
use crate::cluster::{Activation, Cluster};
use crate::error::Result;
use crate::id::ObjectId;
use crate::pitr::Bookmark;

/// Returns the activation and whether it carried out a user's
/// `restore_on_next_open`.
pub(super) fn activate(
    c: &Arc<Cluster>,
    shared: &Shared,
    id: ObjectId,
    dir: &Path,
) -> Result<(Activation, bool)> {
    // A restore marker counts only while the ownership that wrote it
    // holds: one left behind before the object moved to another host
    // would roll back what that host acknowledged since.
    let pending = match pending_restore(dir)? {
        Some(p) => match &p.owner {
            Some((inc, epoch)) if *inc == c.incarnation() && c.owned_epoch(&id) == Some(*epoch) => {
                Some(p.target)
            }
            _ => {
                tracing::warn!(object = %id, target = %p.target,
                    "discarding a restore request made under an ownership this host no longer has");
                discard_restore_marker(dir)?;
                None
            }
        },
        None => None,
    };
    let act = c.acquire(id, pending)?;
    if !act.new_epoch {
        return Ok((act, false));
    }
    let r = start_epoch(shared, id, dir, &act, pending);
    if let Err(e) = r {
        // The claim stands, but the files are not ready: the next open
        // takes a fresh epoch and tries again.
        c.forget(&id);
        return Err(e);
    }
    Ok((act, pending.is_some()))
}

fn start_epoch(
    shared: &Shared,
    id: ObjectId,
    dir: &Path,
    act: &Activation,
    pending: Option<Bookmark>,
) -> Result<()> {
    let now = shared.config.clock.now_ms();
    if let Some(target) = pending {
        // The user's restore, on this host's own files: as outside cluster
        // mode, the current state is in the bucket (restore_on_next_open
        // waited for it), so the local files are replaced.
        return restore_into(shared, id, dir, target, Some(act.epoch));
    }
    let local = local_position(dir)?;
    // On a first claim the local files may come from before cluster mode,
    // when local durability acknowledged commits the bucket never got.
    // Keep them if they are not behind the bucket: the new epoch's base
    // snapshot then carries them.
    let adopt = act.first_claim
        && match (local, act.source) {
            (Some(_), None) => true,
            (Some(l), Some(b)) => l.epoch() == b.epoch() && l.seq() >= b.seq(),
            (None, _) => false,
        };
    if adopt {
        tracing::info!(object = %id, local = ?local, "first claim keeps the local database");
        return Ok(());
    }
    // Otherwise the bucket is the truth. Local files that might hold
    // something it lacks are moved aside, never deleted.
    let maybe_ahead = match (local, act.source) {
        (Some(l), Some(b)) => !(l.epoch() == b.epoch() && l.seq() <= b.seq()) && act.first_claim,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if maybe_ahead {
        tracing::warn!(object = %id, local = ?local, source = ?act.source,
            "moving local files aside: they do not match the bucket");
        set_aside_local(dir, now)?;
    }
    match act.source {
        Some(b) => restore_into(shared, id, dir, b, Some(act.epoch)),
        None => {
            // Nothing anywhere: the object starts empty.
            set_aside_local(dir, now)
        }
    }
}
