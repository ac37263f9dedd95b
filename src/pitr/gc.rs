//! Retention: delete what no restore inside the window can need.
//!
//! Inside an epoch, a restore to any commit at or after the window's start
//! needs the newest snapshot at or before that start and everything after
//! it, so those are kept and older snapshots and segments go. An epoch
//! that stopped being live before the window began (a later epoch has a
//! base snapshot and started before the window) goes entirely, except its
//! manifest: manifests are fences and are never deleted, and neither are
//! cluster ownership records (`owners/`), which a stale writer could
//! otherwise re-create. The window is
//! widened by a grace period so a restore that resolved its target just
//! inside the window cannot lose its snapshot while it runs.

use std::time::Duration;

use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::bucket::store_error;
use super::history::load_history;
use super::snapshot::read_snapshot_header;
use super::Bucket;
use crate::error::Result;
use crate::id::ObjectId;

/// Extra time kept beyond the retention window.
pub const GC_GRACE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub deleted_snapshots: usize,
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
}

pub async fn gc_object(
    bucket: &Bucket,
    id: &ObjectId,
    now_ms: u64,
    retention: Duration,
) -> Result<GcReport> {
    let horizon = now_ms.saturating_sub((retention + GC_GRACE).as_millis() as u64);
    let history = load_history(bucket, id).await?;
    let store = bucket.store();
    let mut doomed: Vec<(Path, u64, bool)> = Vec::new();
    let n = history.epochs.len();
    for (i, ep) in history.epochs.iter().enumerate() {
        let is_last = i + 1 == n;
        // An epoch is live until a later one has a base snapshot: a later
        // epoch without one (its claimer died before shipping it) never
        // took over, and the next claim restores from this epoch again.
        let ended = history.epochs[i + 1..]
            .iter()
            .find(|e| !e.snapshots.is_empty())
            .and_then(|e| e.manifest)
            .map(|m| m.started_ms);
        if !is_last && ended.is_some_and(|t| t < horizon) {
            doomed.extend(ep.snapshots.iter().map(|s| (s.key.clone(), s.size, true)));
            doomed.extend(ep.segments.iter().map(|s| (s.key.clone(), s.size, false)));
            continue;
        }
        // The newest snapshot at or before the horizon is the oldest one
        // still needed.
        let mut keep_from = None;
        for s in ep.snapshots.iter().rev() {
            let head = store
                .get_range(&s.key, 0..128.min(s.size))
                .await
                .map_err(|e| store_error("reading a snapshot header", e))?;
            let h = read_snapshot_header(&head)?;
            if h.commit.commit_time_ms <= horizon {
                keep_from = Some(s.seq);
                break;
            }
        }
        let Some(base) = keep_from else { continue };
        doomed.extend(
            ep.snapshots
                .iter()
                .filter(|s| s.seq < base)
                .map(|s| (s.key.clone(), s.size, true)),
        );
        doomed.extend(
            ep.segments
                .iter()
                .filter(|s| s.last <= base)
                .map(|s| (s.key.clone(), s.size, false)),
        );
    }
    let mut rep = GcReport::default();
    for (key, size, is_snap) in doomed {
        match store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_error("deleting an expired file", e)),
        }
        rep.deleted_bytes += size;
        if is_snap {
            rep.deleted_snapshots += 1;
        } else {
            rep.deleted_segments += 1;
        }
    }
    Ok(rep)
}

/// Deletes every bucket key of object `id` in epochs below `below_epoch`,
/// manifests included: the history of a deleted object (`Store::delete_object`),
/// whose name, if reused, starts at `below_epoch`. Not for cluster mode,
/// where manifests fence stale writers. Returns the keys deleted.
pub async fn purge_object(bucket: &Bucket, id: &ObjectId, below_epoch: u64) -> Result<u64> {
    let layout = bucket.layout();
    let store = bucket.store();
    let listing = bucket.list_dir(&layout.object(id)).await?;
    let mut deleted = 0u64;
    for dir in listing.dirs {
        let Ok(parsed) = layout.parse(&dir) else {
            continue;
        };
        if parsed.epoch >= below_epoch {
            continue;
        }
        let mut keys = Vec::new();
        let mut stream = store.list(Some(&dir));
        while let Some(meta) = futures_util::StreamExt::next(&mut stream).await {
            let meta = meta.map_err(|e| store_error("listing a deleted object's history", e))?;
            keys.push(meta.location);
        }
        // The manifest last: a reader that still finds it also finds what
        // it describes, or a listing it can explain.
        keys.sort_by_key(|k| k.filename() == Some(super::keys::MANIFEST_NAME));
        for key in keys {
            match store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(e) => return Err(store_error("deleting a deleted object's history", e)),
            }
        }
    }
    Ok(deleted)
}
