//! The shipper: uploads each object's committed transactions to the bucket
//! as segments, one PUT in flight per object, and raises the object's
//! remote watermark as they land.
//!
//! Records wait in a per-object queue; when the object has no upload in
//! flight, one task takes everything queued (up to `max_segment_bytes`) as
//! one segment. Commits that arrive during the PUT wait for the next one:
//! group commit against the bucket. A PUT is retried with backoff; it is
//! never skipped. After `upload_attempts` failures the object is broken,
//! and its unshipped commits stay in the local WAL (never checkpointed) to
//! be shipped on reopen.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::runtime::Runtime;

use tokio::sync::Semaphore;

use super::segment::{CommitInfo, Record, SegmentWriter};
use super::snapshot::encode_snapshot;
use super::Bucket;
use crate::config::PitrConfig;
use crate::durability::Watermark;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;

/// Store-wide: the async runtime, the bucket and the upload limit.
pub(crate) struct Shipper {
    rt: Option<Runtime>,
    /// Upload loops running; drop waits for them to finish.
    active: Arc<std::sync::atomic::AtomicUsize>,
    handle: tokio::runtime::Handle,
    pub(crate) bucket: Bucket,
    sem: Arc<Semaphore>,
    pub(crate) cfg: PitrConfig,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Drop for Shipper {
    fn drop(&mut self) {
        // Uploads still running are abandoned; their commits are in the
        // local WAL, which is not checkpointed until they are shipped, so
        // the next open ships them.
        if let Some(rt) = self.rt.take() {
            if tokio::runtime::Handle::try_current().is_err() {
                // Let uploads in flight land (bounded), so a process that
                // exits right after its last commit still ships it.
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while self.active.load(std::sync::atomic::Ordering::Acquire) > 0
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(10));
            }
        }
    }
}

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
    mark: Arc<Watermark>,
    hint_path: PathBuf,
    /// Cluster mode: checked after each PUT, before acknowledging it.
    fence: Option<crate::cluster::Fence>,
}

impl ShipState {
    pub(crate) fn new(
        id: ObjectId,
        inner: ShipInner,
        mark: Arc<Watermark>,
        hint_path: PathBuf,
        fence: Option<crate::cluster::Fence>,
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

    fn write_hint(&self, st: &ShipInner) {
        // A hint only: a stale (low) value costs a re-upload that restore
        // tolerates; it is never written ahead of the bucket.
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

impl Shipper {
    pub(crate) fn new(
        bucket: Bucket,
        cfg: PitrConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Shipper> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("amber-ship")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the shipper runtime", e))?;
        Ok(Shipper {
            active: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            handle: rt.handle().clone(),
            rt: Some(rt),
            bucket,
            sem: Arc::new(Semaphore::new(cfg.max_concurrent_uploads.max(1))),
            cfg,
            clock,
        })
    }

    /// Runs `fut` on the shipper's runtime and waits for it. Safe to call
    /// from any thread, including a thread of another tokio runtime.
    pub(crate) fn block_on<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().expect("shipper runtime dropped a task")
    }

    /// Runs `fut` on the shipper's runtime in the background.
    pub(crate) fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Queues a committed transaction.
    pub(crate) fn enqueue(self: &Arc<Self>, st: &Arc<ShipState>, record: Record) {
        let start = {
            let mut inner = st.lock();
            inner.pending.push_back(record);
            !inner.in_flight && !inner.failed && {
                inner.in_flight = true;
                true
            }
        };
        if start {
            self.spawn_upload(st.clone());
        }
    }

    /// Queues a snapshot; it is uploaded before any record queued later.
    pub(crate) fn enqueue_snapshot(self: &Arc<Self>, st: &Arc<ShipState>, job: SnapshotJob) {
        let start = {
            let mut inner = st.lock();
            inner.snapshot = Some(job);
            !inner.in_flight && !inner.failed && {
                inner.in_flight = true;
                true
            }
        };
        if start {
            self.spawn_upload(st.clone());
        }
    }

    fn spawn_upload(self: &Arc<Self>, st: Arc<ShipState>) {
        // The task holds a weak reference: the last strong one must drop
        // outside the runtime (dropping a runtime inside itself panics).
        let me = Arc::downgrade(self);
        let active = ActiveGuard::new(self.active.clone());
        self.handle.spawn(async move {
            let _active = active;
            if let Some(me) = me.upgrade() {
                let bucket = me.bucket.clone();
                let sem = me.sem.clone();
                let cfg = me.cfg.clone();
                let clock = me.clock.clone();
                drop(me);
                upload_loop(bucket, sem, cfg, clock, st).await;
            }
        });
    }
}

async fn upload_loop(
    bucket: Bucket,
    sem: Arc<Semaphore>,
    cfg: PitrConfig,
    clock: Arc<dyn crate::clock::Clock>,
    st: Arc<ShipState>,
) {
    let up = Uploader { bucket, cfg, clock };
    {
        if !up.cfg.flush_interval.is_zero() {
            tokio::time::sleep(up.cfg.flush_interval).await;
        }
        loop {
            enum Job {
                Snapshot(SnapshotJob, u64),
                Segment(Vec<Record>, u64),
            }
            let job = {
                let mut inner = st.lock();
                if let Some(s) = inner.snapshot.take() {
                    Job::Snapshot(s, inner.epoch)
                } else if inner.pending.is_empty() {
                    inner.in_flight = false;
                    return;
                } else {
                    let mut bytes = 0usize;
                    let mut take = Vec::new();
                    while let Some(r) = inner.pending.front() {
                        let len = r.page_data().len();
                        if !take.is_empty() && bytes + len > up.cfg.max_segment_bytes {
                            break;
                        }
                        bytes += len;
                        take.push(inner.pending.pop_front().expect("front exists"));
                    }
                    Job::Segment(take, inner.epoch)
                }
            };
            let _permit = sem.acquire().await;
            let result = match job {
                Job::Snapshot(s, epoch) => up.upload_snapshot(&st, epoch, s).await,
                Job::Segment(records, epoch) => up.upload_segment(&st, epoch, records).await,
            };
            if let Err(e) = result {
                let mut inner = st.lock();
                inner.failed = true;
                inner.in_flight = false;
                drop(inner);
                st.mark.fail(Error::new(
                    e.kind(),
                    format!("shipping to the bucket failed: {e}"),
                ));
                return;
            }
        }
    }
}

/// Counts a running upload loop for as long as it lives.
struct ActiveGuard(Arc<std::sync::atomic::AtomicUsize>);

impl ActiveGuard {
    fn new(n: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        ActiveGuard(n)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

struct Uploader {
    bucket: Bucket,
    cfg: PitrConfig,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Uploader {
    async fn upload_segment(&self, st: &ShipState, epoch: u64, records: Vec<Record>) -> Result<()> {
        let first = records.first().map(Record::seq).unwrap_or(0);
        let last = records.last().map(Record::seq).unwrap_or(0);
        let mut w = SegmentWriter::new(st.id, epoch)?;
        for r in &records {
            w.push(r)?;
        }
        let bytes = w.finish()?;
        let len = bytes.len() as u64;
        let key = self.bucket.layout().segment(&st.id, epoch, first, last)?;
        self.put_create(&key, bytes).await?;
        if let Some(f) = &st.fence {
            f.confirm().await?;
        }
        let mut inner = st.lock();
        inner.shipped = inner.shipped.max(last);
        inner.log_bytes += len;
        st.write_hint(&inner);
        drop(inner);
        st.mark.advance_remote(last);
        Ok(())
    }

    async fn upload_snapshot(&self, st: &ShipState, epoch: u64, job: SnapshotJob) -> Result<()> {
        let seq = job.commit.seq;
        let time = job.commit.commit_time_ms;
        let bytes =
            tokio::task::block_in_place(|| encode_snapshot(&st.id, epoch, job.commit, &job.image))?;
        let key = self.bucket.layout().snapshot(&st.id, epoch, seq);
        self.put_create(&key, bytes).await?;
        if let Some(f) = &st.fence {
            f.confirm().await?;
        }
        {
            let mut inner = st.lock();
            inner.snapshot_seq = Some(seq);
            inner.shipped = inner.shipped.max(seq);
            inner.log_bytes = 0;
            inner.last_snapshot_ms = time;
            st.write_hint(&inner);
        }
        st.mark.advance_remote(seq);
        // A new snapshot is when old history may become unneeded. A failed
        // GC costs storage, not data: it is retried after the next one.
        let now = self.clock.now_ms();
        let _ = super::gc::gc_object(&self.bucket, &st.id, now, self.cfg.retention).await;
        Ok(())
    }

    /// A create-only PUT with retries. A retry that finds the key already
    /// there compares bytes: an earlier attempt whose response was lost
    /// counts as success; anything else is a conflict.
    pub(crate) async fn put_create(&self, key: &Path, bytes: Vec<u8>) -> Result<()> {
        put_create(self.bucket.store().as_ref(), key, bytes, &self.cfg).await
    }
}

pub(crate) async fn put_create(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Vec<u8>,
    cfg: &PitrConfig,
) -> Result<()> {
    let mut delay = cfg.retry_base;
    let mut last_err = String::new();
    for attempt in 0..cfg.upload_attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(key, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => match store.get(key).await {
                Ok(got) => match got.bytes().await {
                    Ok(existing) if existing[..] == bytes[..] => return Ok(()),
                    Ok(existing) if same_commits(&existing, &bytes) => return Ok(()),
                    Ok(_) => {
                        return Err(Error::new(
                            ErrorKind::Corruption,
                            format!("{key} already exists with different contents"),
                        ))
                    }
                    Err(e) => last_err = e.to_string(),
                },
                Err(e) => last_err = e.to_string(),
            },
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "PUT {key} failed after {} attempts: {last_err}",
            cfg.upload_attempts
        ),
    ))
}

/// True if two encodings carry the same commits of the same object and
/// epoch. A segment re-shipped from the WAL after a crash may differ in
/// commit times (only the last one is recoverable locally), and the one in
/// the bucket, captured live, is the better copy. Within one epoch there is
/// one writer, so the same key and range means the same commits.
fn same_commits(a: &[u8], b: &[u8]) -> bool {
    use super::segment::read_segment_header;
    use super::snapshot::read_snapshot_header;
    if let (Ok(x), Ok(y)) = (read_segment_header(a), read_segment_header(b)) {
        return (x.object, x.epoch, x.first_seq, x.last_seq, x.record_count)
            == (y.object, y.epoch, y.first_seq, y.last_seq, y.record_count);
    }
    if let (Ok(x), Ok(y)) = (read_snapshot_header(a), read_snapshot_header(b)) {
        return (x.object, x.epoch, x.commit.seq) == (y.object, y.epoch, y.commit.seq);
    }
    false
}
