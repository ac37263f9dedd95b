//! When a commit may checkpoint or snapshot. Only frames already in the
//! bucket may leave the local WAL, because the WAL is what ships them again
//! after a crash; a snapshot replaces the WAL, so it waits for the same.
//! Under sustained load these waits are the writer's backpressure.

use std::time::Duration;

use super::ObjectShip;
use crate::error::{Error, Result};
use crate::sqlite::wal::{WalCommit, WalTap};
use crate::sqlite::{Connection, PAGE_SIZE};

/// The log since the last snapshot must reach this before a snapshot is
/// considered: below it, reading the page count is not worth a commit's
/// time, and a snapshot saves nothing.
pub(crate) const SNAPSHOT_MIN_LOG_BYTES: u64 = 64 * 1024;
/// How long a commit waits for the shipper before it skips a checkpoint or
/// a snapshot (the next commit tries again).
pub(crate) const GATE_WAIT: Duration = Duration::from_secs(10);
/// How long `restore_on_next_open` and a restored open wait for everything
/// to be in the bucket.
pub(crate) const SHIPPED_WAIT: Duration = Duration::from_secs(60);

const PAGE_COUNT: &str = "PRAGMA page_count";

/// Without a bucket: checkpoints once the WAL holds `checkpoint_pages`.
/// Returns true when the object's files now hold every commit durably.
pub(crate) fn checkpoint_when_long(conn: &Connection, checkpoint_pages: u32) -> Result<bool> {
    if conn.wal_state().frames.get() < checkpoint_pages {
        return Ok(false);
    }
    checkpoint(conn)
}

/// A checkpoint under `synchronous = NORMAL` fsyncs the WAL before it
/// copies and the database after; one that copied every frame leaves all
/// commits durable in the object's own files.
fn checkpoint(conn: &Connection) -> Result<bool> {
    let (log, done) = conn.checkpoint_passive().map_err(Error::sqlite)?;
    conn.wal_state().frames.set(0);
    Ok(log == done)
}

impl ObjectShip {
    /// After `commits` (the last of them `seq`, at `time_ms`): ship them,
    /// then checkpoint or snapshot if that is due and everything is
    /// shipped. Returns true when the object's files now hold every commit
    /// durably.
    pub(crate) fn committed(
        &mut self,
        conn: &Connection,
        tap: &mut WalTap,
        commits: &[WalCommit],
        seq: u64,
        time_ms: u64,
        checkpoint_pages: u32,
    ) -> Result<bool> {
        self.capture(commits, seq, time_ms)?;
        let mut synced = false;
        if conn.wal_state().frames.get() >= checkpoint_pages
            && self.state.mark.wait_remote(seq, GATE_WAIT)
        {
            synced = checkpoint(conn)?;
        }
        Ok(self.snapshot_if_due(conn, tap, seq, time_ms)? || synced)
    }

    /// Takes a snapshot once the log since the last one outgrows the
    /// database (Cloudflare's rule), everything is shipped, and the minimum
    /// interval has passed.
    fn snapshot_if_due(
        &mut self,
        conn: &Connection,
        tap: &mut WalTap,
        seq: u64,
        time_ms: u64,
    ) -> Result<bool> {
        if self.state.lock().log_bytes < SNAPSHOT_MIN_LOG_BYTES {
            return Ok(false);
        }
        let pages = conn
            .internal(|| {
                let mut st = conn.prepare_cached(PAGE_COUNT)?;
                st.step()?;
                Ok(st.column_i64(0))
            })
            .map_err(Error::sqlite)? as u64;
        let now = self.shipper.clock.now_ms();
        if !self.snapshot_due(pages * u64::from(PAGE_SIZE), now) {
            return Ok(false);
        }
        if !self.state.mark.wait_remote(seq, GATE_WAIT) {
            return Ok(false);
        }
        // A TRUNCATE checkpoint, fsynced like any other.
        self.snapshot(conn, tap, seq, time_ms)?;
        conn.wal_state().frames.set(0);
        Ok(true)
    }

    /// Whether the log since the last snapshot has outgrown the database,
    /// and the minimum interval has passed.
    fn snapshot_due(&self, db_bytes: u64, now_ms: u64) -> bool {
        let st = self.state.lock();
        let min = self.shipper.cfg.snapshot_min_interval.as_millis() as u64;
        st.log_bytes > db_bytes && now_ms.saturating_sub(st.last_snapshot_ms) >= min
    }
}
