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
use std::collections::HashMap;

use super::history::{load_history, History, SegmentRef, SegmentSource};
use super::keys::{KeyKind, ParsedKey};
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
    /// Store segments (shared by many objects) deleted by [`gc_store_log`].
    pub deleted_store_segments: usize,
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
    let mut doomed: Vec<(Path, u64, bool)> = Vec::new();
    for (ep, cut) in history
        .epochs
        .iter()
        .zip(cutoffs(bucket, &history, horizon).await?)
    {
        match cut {
            Cutoff::Keep => {}
            Cutoff::Epoch => {
                doomed.extend(ep.snapshots.iter().map(|s| (s.key.clone(), s.size, true)));
                doomed.extend(own(&ep.segments, u64::MAX));
                doomed.extend(spans_to_drop(bucket, id, ep.epoch, u64::MAX).await?);
            }
            Cutoff::Below(base) => {
                doomed.extend(
                    ep.snapshots
                        .iter()
                        .filter(|s| s.seq < base)
                        .map(|s| (s.key.clone(), s.size, true)),
                );
                doomed.extend(own(&ep.segments, base));
                doomed.extend(spans_to_drop(bucket, id, ep.epoch, base).await?);
            }
        }
    }
    let mut rep = GcReport::default();
    for (key, size, is_snap) in doomed {
        match bucket.store().delete(&key).await {
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

/// What retention lets go of in one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cutoff {
    /// Everything is still needed.
    Keep,
    /// The epoch ended before the window: all of it goes (not its manifest).
    Epoch,
    /// Snapshots below this commit, and commits at or below it, go.
    Below(u64),
}

impl Cutoff {
    fn frees(self, last: u64) -> bool {
        match self {
            Cutoff::Keep => false,
            Cutoff::Epoch => true,
            Cutoff::Below(base) => last <= base,
        }
    }
}

/// The cutoff of each of `history`'s epochs, in order.
async fn cutoffs(bucket: &Bucket, history: &History, horizon: u64) -> Result<Vec<Cutoff>> {
    let store = bucket.store();
    let n = history.epochs.len();
    let mut out = Vec::with_capacity(n);
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
            out.push(Cutoff::Epoch);
            continue;
        }
        // The newest snapshot at or before the horizon is the oldest one
        // still needed.
        let mut cut = Cutoff::Keep;
        for s in ep.snapshots.iter().rev() {
            let head = store
                .get_range(&s.key, 0..128.min(s.size))
                .await
                .map_err(|e| store_error("reading a snapshot header", e))?;
            let h = read_snapshot_header(&head)?;
            if h.commit.commit_time_ms <= horizon {
                cut = Cutoff::Below(s.seq);
                break;
            }
        }
        out.push(cut);
    }
    Ok(out)
}

/// Deletes the store segments (`log/`) that no object needs any more:
/// every run in them is of an epoch that retention let go of, or at or
/// below the oldest snapshot a restore inside the window can start from.
/// Only segments written before the window (plus grace) are looked at,
/// oldest first per stream; an object with no history left (purged) needs
/// nothing. Reads each candidate's table of contents and the history of
/// each object named in one.
pub async fn gc_store_log(bucket: &Bucket, now_ms: u64, retention: Duration) -> Result<GcReport> {
    let horizon = now_ms.saturating_sub((retention + GC_GRACE).as_millis() as u64);
    let layout = bucket.layout();
    let mut cuts: HashMap<ObjectId, Vec<(u64, Cutoff)>> = HashMap::new();
    let mut rep = GcReport::default();
    for stream in bucket.list_dir(&layout.log()).await?.dirs {
        let mut segs: Vec<_> = bucket
            .list_dir(&stream)
            .await?
            .objects
            .into_iter()
            .filter_map(|m| Some((layout.parse_store_segment(&m.location)?.1, m)))
            .collect();
        segs.sort_by_key(|s| s.0);
        for (_, meta) in segs {
            let toc = super::shared_log::read_toc(bucket, &meta.location).await?;
            if toc.written_ms > horizon {
                break; // the rest of the stream is newer
            }
            let mut free = true;
            for e in &toc.entries {
                if let std::collections::hash_map::Entry::Vacant(slot) = cuts.entry(e.object) {
                    // The object's own GC first, so that its oldest
                    // snapshot is its cutoff: a restore then never asks for
                    // a run this deletes (see `SegmentSource::Index`).
                    gc_object(bucket, &e.object, now_ms, retention).await?;
                    let h = load_history(bucket, &e.object).await?;
                    let c = cutoffs(bucket, &h, horizon).await?;
                    slot.insert(h.epochs.iter().map(|x| x.epoch).zip(c).collect());
                }
                let epochs = &cuts[&e.object];
                // An epoch the bucket no longer has was purged.
                let cut = epochs
                    .iter()
                    .find(|(ep, _)| *ep == e.epoch)
                    .map_or(Cutoff::Epoch, |(_, c)| *c);
                if !cut.frees(e.last) {
                    free = false;
                    break;
                }
            }
            if !free {
                continue;
            }
            match bucket.store().delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_error("deleting an expired store segment", e)),
            }
            rep.deleted_store_segments += 1;
            rep.deleted_bytes += meta.size;
        }
    }
    Ok(rep)
}

/// The object's own files among `segs` that hold nothing after `base`:
/// segment files and indexes. Runs inside store segments are shared; the
/// store's log GC ([`super::gc_store_log`]) deletes those.
fn own(segs: &[SegmentRef], base: u64) -> impl Iterator<Item = (Path, u64, bool)> + '_ {
    segs.iter()
        .filter(move |s| s.last <= base && !matches!(s.source, SegmentSource::Packed { .. }))
        .map(|s| (s.key.clone(), s.size, false))
}

/// Span markers of spans that ended at or before commit `base`, both ends.
async fn spans_to_drop(
    bucket: &Bucket,
    id: &ObjectId,
    epoch: u64,
    base: u64,
) -> Result<Vec<(Path, u64, bool)>> {
    let layout = bucket.layout();
    let mut opens = Vec::new();
    let mut ends = Vec::new();
    for meta in bucket.list_dir(&layout.spans_dir(id, epoch)).await?.objects {
        if let Ok(ParsedKey {
            kind:
                KeyKind::Span {
                    gen,
                    seq,
                    open,
                    stream,
                },
            ..
        }) = layout.parse(&meta.location)
        {
            if open { &mut opens } else { &mut ends }.push((stream, gen, seq, meta.location));
        }
    }
    let mut out = Vec::new();
    for (stream, gen, seq, key) in &ends {
        if *seq > base {
            continue;
        }
        if let Some(o) = opens
            .iter()
            .filter(|o| o.0 == *stream && o.1 <= *gen)
            .max_by_key(|o| o.1)
        {
            out.push((o.3.clone(), 0, false));
        }
        out.push((key.clone(), 0, false));
    }
    if base == u64::MAX {
        // The whole epoch goes: open spans too.
        out.extend(opens.into_iter().map(|o| (o.3, 0, false)));
        out.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        out.dedup_by(|a, b| a.0 == b.0);
    }
    Ok(out)
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
