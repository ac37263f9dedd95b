//! The object's side of log shipping: capture each commit's WAL frames
//! right after it commits and queue them for the shipper, queue snapshot
//! images, and on open ship whatever the local WAL holds that the bucket
//! does not.

use std::path::Path;
use std::sync::Arc;

use super::queue::{read_hint, ShipInner, ShipState, SnapshotJob};
use super::Shipper;
use crate::catalog::Catalog;
use crate::cluster::Fence;
use crate::durability::Watermark;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::pitr::history::{load_epoch, write_manifest, Manifest};
use crate::pitr::{CommitInfo, Record};
use crate::sqlite::wal::{WalCommit, WalTap};
use crate::sqlite::{Connection, PAGE_SIZE};

pub(crate) struct ObjectShip {
    pub(crate) state: Arc<ShipState>,
    pub(crate) shipper: Arc<Shipper>,
    /// The database file, read whole for a snapshot.
    db_path: std::path::PathBuf,
}

fn record(seq: u64, time_ms: u64, c: &WalCommit) -> Result<Record> {
    let db = c.db_size_pages;
    Ok(Record::with_pages(
        CommitInfo {
            seq,
            commit_time_ms: time_ms,
            db_size_pages: db,
            page_size: c.page_size,
        },
        // A transaction that shrank the file may have touched pages past
        // its final size; they are not part of the committed state.
        c.pages
            .iter()
            .filter(|(p, _)| *p <= db)
            .map(|(p, d)| (*p, d)),
    )?)
}

/// What `ObjectShip::prepare` found, before the watermark exists.
pub(crate) struct ShipPlan {
    inner: ShipInner,
    backlog: Vec<Record>,
    need_snapshot: bool,
    catalog: Arc<Catalog>,
}

impl ShipPlan {
    /// The remote watermark to start from.
    pub(crate) fn shipped(&self) -> u64 {
        self.inner.shipped
    }
}

impl Drop for ObjectShip {
    fn drop(&mut self) {
        self.shipper.closed(&self.state);
    }
}

impl ObjectShip {
    /// Works out what an object just opened at (`seq`, `time_ms`, `epoch`),
    /// whose WAL holds `commits`, must ship: the ones the bucket lacks, or
    /// a snapshot when the epoch has no base or the two do not meet.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn prepare(
        shipper: &Arc<Shipper>,
        catalog: &Arc<Catalog>,
        id: ObjectId,
        dir: &Path,
        seq: u64,
        time_ms: u64,
        epoch: u64,
        now_ms: u64,
        commits: &[WalCommit],
    ) -> Result<ShipPlan> {
        shipper.wait_previous(id);
        let inner = match read_hint(catalog, &id, dir).filter(|h| h.epoch == epoch) {
            Some(h) => h,
            None => {
                // No trustworthy local record: ask the bucket (two LISTs).
                let ep =
                    shipper.on_bucket(move |b| async move { load_epoch(&b, &id, epoch).await })?;
                if ep.manifest.is_none() {
                    let m = Manifest {
                        epoch,
                        parent: None,
                        started_ms: now_ms,
                    };
                    let clock = shipper.clock.clone();
                    shipper.on_bucket(move |b| async move {
                        write_manifest(&b, &*clock, &id, m).await
                    })?;
                }
                let snap = ep.snapshots.iter().map(|s| s.seq).max();
                ShipInner {
                    epoch,
                    shipped: ep.last_seq().unwrap_or(0),
                    snapshot_seq: snap,
                    log_bytes: ep
                        .segments
                        .iter()
                        .filter(|s| snap.is_some_and(|n| s.first > n))
                        .map(|s| s.size)
                        .sum(),
                    ..ShipInner::default()
                }
            }
        };
        let shipped = inner.shipped;
        let has_base = inner.snapshot_seq.is_some();
        // Every commit in the WAL bumped the sequence number by one, so the
        // WAL holds commits seq-g+1 ..= seq.
        let g = commits.len() as u64;
        let first_in_wal = (seq + 1).saturating_sub(g);
        let mut backlog = Vec::new();
        if shipped > seq {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "the local database (commit {seq}) is behind the bucket (commit {shipped}) \
                     in epoch {epoch}: restore it from the bucket (`amber restore --in-place`)"
                ),
            ));
        }
        let mut need_snapshot = !has_base;
        if has_base && shipped < seq {
            if shipped + 1 >= first_in_wal {
                for (i, c) in commits.iter().enumerate() {
                    let s = first_in_wal + i as u64;
                    if s > shipped {
                        backlog.push(record(s, time_ms, c)?);
                    }
                }
            } else {
                // The bucket and the WAL do not meet: bridge with a snapshot.
                need_snapshot = true;
            }
        }
        Ok(ShipPlan {
            inner,
            backlog,
            need_snapshot,
            catalog: catalog.clone(),
        })
    }

    /// Starts shipping per `plan`, taking a snapshot now if it needs one.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        shipper: Arc<Shipper>,
        id: ObjectId,
        dir: &Path,
        conn: &Connection,
        tap: &mut WalTap,
        plan: ShipPlan,
        mark: Arc<Watermark>,
        seq: u64,
        time_ms: u64,
        fence: Option<Fence>,
    ) -> Result<ObjectShip> {
        let shared = shipper.shares();
        let epoch = plan.inner.epoch;
        let state = ShipState::new(id, plan.inner, mark, plan.catalog, fence, shared);
        if let (true, Some(log)) = (shared, &shipper.log) {
            // Before `ship` exists: its drop (even on an error below)
            // closes this.
            log.open_handle(id, epoch);
        }
        let mut ship = ObjectShip {
            state,
            shipper,
            db_path: dir.join("db"),
        };
        if plan.need_snapshot {
            ship.snapshot(conn, tap, seq, time_ms)?;
        } else {
            for r in plan.backlog {
                ship.shipper.enqueue(&ship.state, r);
            }
        }
        Ok(ship)
    }

    /// Queues the commits that just happened, the last of them `seq`.
    pub(crate) fn capture(&mut self, commits: &[WalCommit], seq: u64, time_ms: u64) -> Result<()> {
        let n = commits.len() as u64;
        for (i, c) in commits.iter().enumerate() {
            let s = seq + 1 - n + i as u64;
            self.shipper.enqueue(&self.state, record(s, time_ms, c)?);
        }
        Ok(())
    }

    /// Checkpoints everything into the database file (the caller made sure
    /// it is all shipped or is about to be covered by this snapshot), then
    /// queues the file's image as a snapshot at `seq`.
    pub(crate) fn snapshot(
        &mut self,
        conn: &Connection,
        tap: &mut WalTap,
        seq: u64,
        time_ms: u64,
    ) -> Result<()> {
        conn.checkpoint_truncate().map_err(Error::sqlite)?;
        tap.reset();
        let path = &self.db_path;
        let image =
            std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let commit = CommitInfo {
            seq,
            commit_time_ms: time_ms,
            db_size_pages: (image.len() / PAGE_SIZE as usize) as u32,
            page_size: PAGE_SIZE,
        };
        self.shipper
            .enqueue_snapshot(&self.state, SnapshotJob { commit, image });
        Ok(())
    }
}
