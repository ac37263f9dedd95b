//! An object's shipping state: what is queued, what is in the bucket, and
//! the hint file that remembers the latter across a clean reopen.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cluster::Fence;
use crate::durability::Watermark;
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
}

/// Per object: what is queued, what is shipped.
pub(crate) struct ShipState {
    pub(crate) id: ObjectId,
    inner: Mutex<ShipInner>,
    pub(super) mark: Arc<Watermark>,
    hint_path: PathBuf,
    /// Cluster mode: checked after each PUT, before acknowledging it.
    pub(super) fence: Option<Fence>,
}

impl ShipState {
    pub(crate) fn new(
        id: ObjectId,
        inner: ShipInner,
        mark: Arc<Watermark>,
        hint_path: PathBuf,
        fence: Option<Fence>,
    ) -> Arc<ShipState> {
        Arc::new(ShipState {
            id,
            inner: Mutex::new(inner),
            mark,
            hint_path,
            fence,
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

    pub(super) fn write_hint(&self, st: &ShipInner) {
        // A hint only, never written ahead of the bucket. It never moves
        // back within an epoch either: an upload that lands after its
        // handle was dropped, and after a newer handle wrote a later
        // position, would otherwise make the next open think the bucket
        // and the WAL do not meet, and bridge with a snapshot. One lock in
        // the process orders the read and the write.
        static HINT_WRITES: Mutex<()> = Mutex::new(());
        let _order = HINT_WRITES.lock().unwrap_or_else(|p| p.into_inner());
        if read_hint(&self.hint_path).is_some_and(|h| h.epoch == st.epoch && h.shipped > st.shipped)
        {
            return;
        }
        let text = format!(
            "{} {} {} {} {}\n",
            st.epoch,
            st.shipped,
            st.snapshot_seq.map_or(-1, |s| s as i64),
            st.log_bytes,
            st.last_snapshot_ms
        );
        let _ = std::fs::write(&self.hint_path, text);
    }
}

/// Reads the hint file: (epoch, shipped, snapshot seq, log bytes, last snapshot ms).
pub(crate) fn read_hint(path: &std::path::Path) -> Option<ShipInner> {
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
