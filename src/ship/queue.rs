//! An object's shipping state: what is queued, what is in the bucket, and
//! the ship hint (in the store catalog) that remembers the latter across a
//! clean reopen.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::catalog::{Catalog, ShipHint};
use crate::cluster::Fence;
use crate::durability::Watermark;
use crate::error::Error;
use crate::id::ObjectId;
use crate::pitr::{CommitInfo, Record};

/// A snapshot waiting for upload.
pub(crate) struct SnapshotJob {
    pub(crate) commit: CommitInfo,
    pub(crate) image: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct ShipInner {
    pub(crate) epoch: u64,
    pub(crate) pending: VecDeque<Record>,
    pub(crate) snapshot: Option<SnapshotJob>,
    pub(crate) in_flight: bool,
    /// Highest sequence number in the bucket.
    pub(crate) shipped: u64,
    /// Sequence number of the newest snapshot in the bucket.
    pub(crate) snapshot_seq: Option<u64>,
    /// Segment bytes uploaded since that snapshot.
    pub(crate) log_bytes: u64,
    pub(crate) last_snapshot_ms: u64,
    pub(crate) failed: bool,
    /// Shared log: claimed by the store's log loop (ready or in a batch).
    pub(crate) in_log: bool,
    /// Shared log: a snapshot of this object is being uploaded; its
    /// records wait.
    pub(crate) snapshot_busy: bool,
    /// Shared log: the handle is gone; its span closes once drained.
    pub(crate) closing: bool,
    pub(crate) released: bool,
}

/// Per object: what is queued, what is shipped.
pub(crate) struct ShipState {
    pub(crate) id: ObjectId,
    inner: Mutex<ShipInner>,
    pub(super) mark: Arc<Watermark>,
    /// Where the ship hint lives: the store catalog's `ship_hints`.
    catalog: Arc<Catalog>,
    /// Cluster mode: checked after each PUT, before acknowledging it.
    pub(super) fence: Option<Fence>,
    /// Shipped through the store's shared log (`store_log.rs`), not by a
    /// loop of its own.
    pub(super) shared: bool,
}

impl ShipState {
    pub(crate) fn new(
        id: ObjectId,
        inner: ShipInner,
        mark: Arc<Watermark>,
        catalog: Arc<Catalog>,
        fence: Option<Fence>,
        shared: bool,
    ) -> Arc<ShipState> {
        Arc::new(ShipState {
            id,
            inner: Mutex::new(inner),
            mark,
            catalog,
            fence,
            shared,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ShipInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `f`'s work and says whether the caller must start an upload
    /// loop (none is running, and the object has not failed).
    pub(super) fn queue(&self, f: impl FnOnce(&mut ShipInner)) -> bool {
        let mut inner = self.lock();
        f(&mut inner);
        if inner.in_flight || inner.failed {
            return false;
        }
        inner.in_flight = true;
        true
    }

    /// Breaks the object's shipping: its pending tickets fail, and its
    /// unshipped commits stay in the local WAL, to ship on reopen.
    pub(super) fn fail(&self, e: &Error) {
        {
            let mut i = self.lock();
            i.failed = true;
            i.in_flight = false;
        }
        self.mark.fail(Error::new(
            e.kind(),
            format!("shipping to the bucket failed: {e}"),
        ));
    }

    pub(super) fn write_hint(&self, st: &ShipInner) {
        // A hint only, never written ahead of the bucket. The catalog never
        // moves it back within an epoch either (one conditional upsert, so
        // across processes too): an upload that lands after its handle was
        // dropped, after a newer handle shipped further, would otherwise
        // make the next open think the bucket and the WAL do not meet, and
        // bridge with a snapshot. A failed write costs the next open two
        // LISTs, not data.
        let h = ShipHint {
            epoch: st.epoch,
            shipped: st.shipped,
            snapshot_seq: st.snapshot_seq,
            log_bytes: st.log_bytes,
            last_snapshot_ms: st.last_snapshot_ms,
        };
        if let Err(e) = self.catalog.set_ship_hint(&self.id, &h) {
            tracing::warn!(object = %self.id, error = %e, "could not record the ship hint");
        }
    }
}

/// The object's ship hint: the catalog's, or a round-1 `ship-hint` file.
pub(crate) fn read_hint(catalog: &Catalog, id: &ObjectId, dir: &Path) -> Option<ShipInner> {
    match catalog.ship_hint(id) {
        Ok(Some(h)) => Some(ShipInner {
            epoch: h.epoch,
            shipped: h.shipped,
            snapshot_seq: h.snapshot_seq,
            log_bytes: h.log_bytes,
            last_snapshot_ms: h.last_snapshot_ms,
            ..ShipInner::default()
        }),
        Ok(None) => read_hint_file(&dir.join(super::HINT_FILE)),
        Err(_) => None,
    }
}

/// Reads a round-1 hint file: (epoch, shipped, snapshot seq, log bytes,
/// last snapshot ms).
fn read_hint_file(path: &Path) -> Option<ShipInner> {
    let text = std::fs::read_to_string(path).ok()?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 5 {
        return None;
    }
    let snap: i64 = f[2].parse().ok()?;
    Some(ShipInner {
        epoch: f[0].parse().ok()?,
        shipped: f[1].parse().ok()?,
        snapshot_seq: (snap >= 0).then_some(snap as u64),
        log_bytes: f[3].parse().ok()?,
        last_snapshot_ms: f[4].parse().ok()?,
        ..ShipInner::default()
    })
}
