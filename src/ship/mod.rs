//! Log shipping: each object's committed transactions go to the bucket as
//! segments, with snapshots on Cloudflare's rule, and the object's remote
//! watermark rises as they land.
//!
//! - `capture.rs`: the object's side: read each commit's frames out of the
//!   WAL (`wal.rs`) right after it commits, and on open work out what the
//!   local WAL holds that the bucket lacks.
//! - `gate.rs`: checkpoints and snapshots, gated on what is shipped, so the
//!   local WAL always holds everything not yet remote.
//! - `queue.rs`: per-object queue and shipped position, and its hint file.
//! - `upload.rs`: the upload loop, one PUT in flight per object.
//!
//! The formats (segment, snapshot) and the bucket layout are in `pitr`;
//! this module only writes them.

mod capture;
mod config;
pub(crate) mod gate;
mod queue;
mod store_log;
mod upload;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::background::Spawner;
use crate::clock::Clock;
use crate::error::Result;
use crate::pitr::{Bucket, Record};

pub(crate) use capture::ObjectShip;
pub use config::PitrConfig;
pub(crate) use queue::{ShipState, SnapshotJob};

/// Round 1 kept the ship hint in this file in the object directory; it is
/// still read when the catalog has none, and never written.
pub(crate) const HINT_FILE: &str = "ship-hint";

/// Store-wide: the bucket, the upload limit and the runtime uploads run on.
pub(crate) struct Shipper {
    spawner: Spawner,
    pub(crate) bucket: Bucket,
    sem: Arc<Semaphore>,
    pub(crate) cfg: PitrConfig,
    clock: Arc<dyn Clock>,
    /// The shared log, unless `cfg.shared_log` is off.
    log: Option<store_log::StoreLog>,
}

impl Shipper {
    pub(crate) fn new(
        spawner: Spawner,
        bucket: Bucket,
        cfg: PitrConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Shipper> {
        let log = match cfg.shared_log {
            true => Some(store_log::StoreLog::new()?),
            false => None,
        };
        Ok(Shipper {
            spawner,
            bucket,
            sem: Arc::new(Semaphore::new(cfg.max_concurrent_uploads.max(1))),
            cfg,
            clock,
            log,
        })
    }

    /// A create-only PUT with retries (`upload::put_create`), holding one
    /// of the store's upload permits.
    async fn put_new(&self, key: object_store::path::Path, bytes: Vec<u8>) -> Result<()> {
        let _permit = self.sem.acquire().await;
        upload::put_create(
            self.bucket.store().as_ref(),
            &key,
            bytes,
            &self.cfg,
            &*self.clock,
        )
        .await
    }

    /// Whether handles ship through the shared log (in cluster mode too:
    /// its fence is checked once per incarnation per store segment).
    fn shares(&self) -> bool {
        self.log.is_some()
    }

    /// Before a new handle of `id` reads its shipped position: waits until
    /// no earlier handle of `id` still ships through the shared log (one
    /// dropped with its last commits in flight). Otherwise both would ship
    /// those commits into one span, and its index would hold overlapping
    /// runs, which readers refuse. Bounded by `gate::SHIPPED_WAIT`, in real
    /// time: it waits for uploads, not for the store's clock.
    pub(crate) fn wait_previous(&self, id: crate::id::ObjectId) {
        let Some(log) = &self.log else { return };
        let until = std::time::Instant::now() + gate::SHIPPED_WAIT;
        while log.shipping(id) && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Runs `f(bucket)` on the store's runtime and waits for its answer.
    pub(crate) fn on_bucket<Fut>(&self, f: impl FnOnce(Bucket) -> Fut) -> Fut::Output
    where
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.spawner.block_on(f(self.bucket.clone()))
    }

    /// Queues a committed transaction.
    pub(crate) fn enqueue(self: &Arc<Self>, st: &Arc<ShipState>, record: Record) {
        if let (true, Some(log)) = (st.shared, &self.log) {
            return log.enqueue(self, st, record);
        }
        if st.queue(|q| q.pending.push_back(record)) {
            self.spawn_upload(st.clone());
        }
    }

    /// Queues a snapshot; it is uploaded before any record queued later.
    pub(crate) fn enqueue_snapshot(self: &Arc<Self>, st: &Arc<ShipState>, job: SnapshotJob) {
        if let (true, Some(log)) = (st.shared, &self.log) {
            return log.enqueue_snapshot(self, st, job);
        }
        if st.queue(|q| q.snapshot = Some(job)) {
            self.spawn_upload(st.clone());
        }
    }

    /// The handle that owns `st` is gone (its queued work still ships).
    pub(crate) fn closed(self: &Arc<Self>, st: &Arc<ShipState>) {
        if let (true, Some(log)) = (st.shared, &self.log) {
            log.closed(self, st);
        }
    }

    /// The store is closing: the shared log ends its spans (their last
    /// indexes and `.end` markers are tracked, so the store waits for them).
    pub(crate) fn shutdown(self: &Arc<Self>) {
        if let Some(log) = &self.log {
            log.shutdown(self);
        }
    }

    /// Before a read of `id`'s history from this process: its shared-log
    /// runs not yet indexed get their index (one small PUT, none if all
    /// are indexed). A failure only costs the read a scan.
    pub(crate) fn index_now(self: &Arc<Self>, id: crate::id::ObjectId) {
        if self.log.is_none() {
            return;
        }
        let me = self.clone();
        self.spawner.block_on(async move {
            if let Some(log) = &me.log {
                log.index_now(&me, id).await;
            }
        });
    }

    /// Object `id` was deleted (see `StoreLog::deleted`).
    pub(crate) fn deleted(self: &Arc<Self>, id: crate::id::ObjectId, purge: bool) {
        if let Some(log) = &self.log {
            log.deleted(self, id, purge);
        }
    }

    fn spawn_upload(self: &Arc<Self>, st: Arc<ShipState>) {
        let me = self.clone();
        // Tracked: a store dropped right after its last commit waits
        // (bounded) for that commit to land.
        self.spawner
            .spawn_tracked(async move { upload::upload_loop(me, st).await });
    }
}
