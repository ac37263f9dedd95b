//! The upload loop: one per object while it has work, so one PUT is in
//! flight per object. It takes everything queued (up to
//! `max_segment_bytes`) as one segment; commits that arrive during the PUT
//! wait for the next one: group commit against the bucket. A PUT is
//! retried with backoff, never skipped. After `upload_attempts` failures
//! the object is broken, and its unshipped commits stay in the local WAL
//! (never checkpointed) to be shipped on reopen.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::queue::{ShipState, SnapshotJob};
use super::{PitrConfig, Shipper};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::pitr::{encode_snapshot, Record, SegmentWriter};
use crate::retry::{Backoff, Step};

pub(super) async fn upload_loop(shipper: Arc<Shipper>, st: Arc<ShipState>) {
    let up = Uploader {
        shipper: shipper.clone(),
    };
    let sem = shipper.sem.clone();
    {
        if !up.shipper.cfg.flush_interval.is_zero() {
            up.shipper.clock.sleep(up.shipper.cfg.flush_interval).await;
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
                        if !take.is_empty() && bytes + len > up.shipper.cfg.max_segment_bytes {
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
                st.fail(&e);
                return;
            }
        }
    }
}

pub(super) struct Uploader {
    pub(super) shipper: Arc<Shipper>,
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
        let key = self
            .shipper
            .bucket
            .layout()
            .segment(&st.id, epoch, first, last)?;
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

    pub(super) async fn upload_snapshot(
        &self,
        st: &ShipState,
        epoch: u64,
        job: SnapshotJob,
    ) -> Result<()> {
        let seq = job.commit.seq;
        let time = job.commit.commit_time_ms;
        let bytes =
            tokio::task::block_in_place(|| encode_snapshot(&st.id, epoch, job.commit, &job.image))?;
        let key = self.shipper.bucket.layout().snapshot(&st.id, epoch, seq);
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
        let now = self.shipper.clock.now_ms();
        let _ = crate::pitr::gc_object(
            &self.shipper.bucket,
            &st.id,
            now,
            self.shipper.cfg.retention,
        )
        .await;
        Ok(())
    }

    /// A create-only PUT with retries. A retry that finds the key already
    /// there compares bytes: an earlier attempt whose response was lost
    /// counts as success; anything else is a conflict.
    async fn put_create(&self, key: &Path, bytes: Vec<u8>) -> Result<()> {
        put_create(
            self.shipper.bucket.store().as_ref(),
            key,
            bytes,
            &self.shipper.cfg,
            &*self.shipper.clock,
        )
        .await
    }
}

pub(crate) async fn put_create(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Vec<u8>,
    cfg: &PitrConfig,
    clock: &dyn Clock,
) -> Result<()> {
    let policy = Backoff::uploads(cfg.retry_base, cfg.upload_attempts);
    let tried = policy
        .run(clock, |_| async {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            let err = match store
                .put_opts(key, PutPayload::from(bytes.clone()), opts)
                .await
            {
                Ok(_) => return Ok(Step::Done(())),
                Err(object_store::Error::AlreadyExists { .. }) => match store.get(key).await {
                    Ok(got) => match got.bytes().await {
                        Ok(existing) if existing[..] == bytes[..] => return Ok(Step::Done(())),
                        Ok(existing) if same_commits(&existing, &bytes) => {
                            return Ok(Step::Done(()))
                        }
                        Ok(_) => {
                            return Err(Error::new(
                                ErrorKind::Corruption,
                                format!("{key} already exists with different contents"),
                            ))
                        }
                        Err(e) => e,
                    },
                    Err(e) => e,
                },
                Err(e) => e,
            };
            Ok(Step::Retry(err))
        })
        .await?;
    tried.map_err(|last| {
        Error::context(
            ErrorKind::Io,
            format_args!("PUT {key} failed after {} attempts", policy.attempts.max(1)),
            last,
        )
    })
}

/// True if two encodings carry the same commits of the same object and
/// epoch. A segment re-shipped from the WAL after a crash may differ in
/// commit times (only the last one is recoverable locally), and the one in
/// the bucket, captured live, is the better copy. Within one epoch there is
/// one writer, so the same key and range means the same commits.
fn same_commits(a: &[u8], b: &[u8]) -> bool {
    use crate::pitr::{read_segment_header, read_snapshot_header};
    if let (Ok(x), Ok(y)) = (read_segment_header(a), read_segment_header(b)) {
        return (x.object, x.epoch, x.first_seq, x.last_seq, x.record_count)
            == (y.object, y.epoch, y.first_seq, y.last_seq, y.record_count);
    }
    if let (Ok(x), Ok(y)) = (read_snapshot_header(a), read_snapshot_header(b)) {
        return (x.object, x.epoch, x.commit.seq) == (y.object, y.epoch, y.commit.seq);
    }
    false
}
