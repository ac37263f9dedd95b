//! One object: its SQLite database, KV cache, turn state and durability
//! watermark.
//!
//! A *turn* is the unit of atomicity. The first write of a turn opens the
//! implicit transaction; `end_turn` flushes coalesced KV writes, stamps the
//! commit's sequence number and time into `_amber_meta`, commits, and hands
//! back a `Ticket` that resolves once the commit is durable.

mod activate;
mod alarm;
mod cache;
mod kv;
pub(crate) mod lock;
mod open;
mod remove;
pub(crate) mod replay;
pub(crate) mod restore;
pub(crate) mod schema;
#[cfg(feature = "serde")]
mod serde_kv;
mod shared;
mod sql;
mod txn;

use std::path::PathBuf;
use std::sync::Arc;

use crate::cluster::Fence;
use crate::durability::{Ticket, Watermark};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::pitr::Bookmark;
use crate::ship::{gate, ObjectShip};
use crate::sqlite::wal::WalTap;
use crate::sqlite::{Connection, ValueRef};

use cache::KvCache;
pub use kv::{ListOptions, ReadOptions, WriteOptions};
pub(crate) use lock::{ObjectLock, ObjectLocks};
pub(crate) use open::NAME_FILE;
pub(crate) use remove::{finish_local, remove_local};
pub(crate) use restore::{local_name, local_position};
pub(crate) use shared::{OpenGuard, Shared, OBJECTS_DIR};
pub use sql::{Cursor, Row};
use txn::TouchSet;

/// State of the turn in progress.
#[derive(Default)]
struct Turn {
    /// The implicit SQLite transaction is open.
    open: bool,
    /// Something was written; the commit gets a new sequence number.
    wrote: bool,
    /// A write that holds the output gate (not `allow_unconfirmed`).
    confirmed: bool,
}

/// Heap bytes one open object holds, by part: SQLite's page cache (bounded
/// by `Tuning::page_cache_kib`), its parsed schema and prepared statements
/// (from `sqlite3_db_status`), and amber's clean KV cache (bounded by
/// `Tuning::kv_cache_bytes`). The heap WAL index (32 KiB while the WAL is
/// in use) and fixed structures are not counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    pub page_cache: usize,
    pub schema: usize,
    pub statements: usize,
    pub kv_cache: usize,
}

/// An open object. One handle per object per process; `Send`, not `Sync`:
/// a turn runs on one thread at a time.
pub struct Object {
    // Declared first so it drops (closing SQLite) before the lock is freed.
    conn: Connection,
    shared: Arc<Shared>,
    mark: Arc<Watermark>,
    id: ObjectId,
    name: String,
    dir: PathBuf,
    cache: KvCache,
    turn: Turn,
    /// Last committed sequence number.
    seq: u64,
    /// Last sequence number that carried a confirmed write.
    gate_seq: u64,
    last_time_ms: u64,
    broken: Option<Error>,
    /// Cached default alarm: `None` = not loaded.
    alarm: Option<Option<u64>>,
    /// The alarm the store catalog holds for this object (`catalog.rs`):
    /// never later than its earliest alarm.
    catalog_alarm: Option<u64>,
    savepoints: Vec<TouchSet>,
    /// Reads each commit's frames back out of the WAL, for the journal
    /// and for shipping.
    tap: WalTap,
    /// Log shipping, when the store has a bucket.
    ship: Option<ObjectShip>,
    epoch: u64,
    /// Cluster mode: the ownership this handle was opened under.
    fence: Option<Fence>,
    _lock: ObjectLock,
    _guard: OpenGuard,
}

impl Drop for Object {
    /// A clean close of an object whose every commit is durable locally
    /// and, with a bucket, shipped lets SQLite checkpoint the database and
    /// delete the WAL as it closes (fsyncing the WAL, then the database,
    /// before the delete): at rest the object is one file. Otherwise the
    /// WAL stays: it holds what must still ship, or what a power cut may
    /// have to find again.
    fn drop(&mut self) {
        if self.broken.is_some()
            || self.turn.open
            || self.mark.has_failed()
            || self.shared.config.tuning.keep_wal_on_close
        {
            return;
        }
        let done = {
            let st = self.mark.lock();
            st.local >= self.seq && (self.ship.is_none() || st.remote >= self.seq)
        };
        if done {
            let _ = self.conn.set_checkpoint_on_close(true);
        }
    }
}

impl Object {
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The epoch (timeline) this handle writes.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory holding this object's files.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Sequence number of the last commit.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The last commit as a bookmark: (epoch, seq). Bookmarks sort
    /// lexically in commit order.
    pub fn current_bookmark(&self) -> Bookmark {
        Bookmark::new(self.epoch, self.seq)
    }

    /// Waits (up to a minute) until every commit so far is in the bucket.
    pub(crate) fn wait_shipped(&self, seq: u64) -> bool {
        self.ship.is_none() || self.mark.wait_remote(seq, gate::SHIPPED_WAIT)
    }

    /// Commit time (ms since the epoch) of the last commit.
    pub fn last_commit_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// Bytes held by the clean KV cache (bounded by `Tuning::kv_cache_bytes`).
    pub fn cache_bytes(&self) -> usize {
        self.cache.clean_bytes()
    }

    /// What this open object holds in memory, by part (see
    /// docs/benchmarks.md, "Density").
    pub fn memory(&self) -> MemoryUse {
        let (page_cache, schema, statements) = self.conn.memory_used();
        MemoryUse {
            page_cache,
            schema,
            statements,
            kv_cache: self.cache.clean_bytes(),
        }
    }

    /// True once a failed commit or fsync has broken this handle.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
            || self.mark.has_failed()
            || self.fence.as_ref().is_some_and(|f| !f.usable())
    }

    /// Fails fast once the object is broken.
    #[inline]
    fn check_usable(&mut self) -> Result<()> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if self.turn.open && self.conn.is_autocommit() {
            // SQLite rolled the turn's transaction back on its own after an
            // error that some path did not catch: its writes are gone, and
            // later statements must not run in autocommit, outside a turn.
            return Err(self.break_with(Error::new(
                ErrorKind::Io,
                "an I/O error rolled back the turn's transaction; its writes are lost",
            )));
        }
        if self.mark.has_failed() {
            let cause = self
                .mark
                .failure()
                .unwrap_or_else(|| Error::new(ErrorKind::Io, "durability failure"));
            return Err(self.break_with(cause));
        }
        if let Some(f) = &self.fence {
            if !f.usable() {
                let e = f.error();
                return Err(self.break_with(e));
            }
        }
        Ok(())
    }

    /// Latches `cause`: rolls back what is open, fails pending tickets, and
    /// makes every later call fail until the object is reopened.
    #[cold]
    fn break_with(&mut self, cause: Error) -> Error {
        if let Some(e) = &self.broken {
            return e.clone();
        }
        let cause = name_full_disk(&self.dir, cause);
        let err = if matches!(cause.kind(), ErrorKind::Broken | ErrorKind::Fenced) {
            cause.clone()
        } else {
            Error::broken(&cause)
        };
        if !self.conn.is_autocommit() {
            let _ = self.internal_run(schema::ROLLBACK);
        }
        self.turn = Turn::default();
        self.savepoints.clear();
        self.cache.clear();
        self.alarm = None;
        self.broken = Some(err.clone());
        self.mark.fail(err.clone());
        // The call that met a full disk says so in its kind (free space,
        // then reopen); later calls and pending tickets say `Broken`.
        match cause.kind() {
            ErrorKind::StorageFull => cause,
            _ => err,
        }
    }

    /// Runs one of amber's own statements to completion.
    fn internal_run(&self, sql: &str) -> Result<()> {
        self.conn
            .internal(|| self.conn.prepare_cached(sql)?.run())
            .map_err(Error::sqlite)
    }

    fn internal_run_with(&self, sql: &str, params: &[ValueRef<'_>]) -> Result<()> {
        self.conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(sql)?;
                st.bind_all(params)?;
                st.run()
            })
            .map_err(Error::sqlite)
    }

    fn internal_query_i64(&self, sql: &str) -> Result<i64> {
        self.conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(sql)?;
                st.step()?;
                Ok(st.column_i64(0))
            })
            .map_err(Error::sqlite)
    }

    /// Opens the turn's implicit transaction if it is not open yet.
    fn ensure_txn(&mut self) -> Result<()> {
        if !self.turn.open {
            self.internal_run(schema::BEGIN)?;
            self.turn.open = true;
        }
        Ok(())
    }

    /// Notes that a write happened in this turn.
    fn wrote(&mut self, confirmed: bool) {
        self.turn.wrote = true;
        self.turn.confirmed |= confirmed;
    }

    /// Writes the coalesced KV writes into the open transaction.
    fn flush_dirty(&mut self) -> Result<()> {
        if !self.cache.has_dirty() {
            return Ok(());
        }
        self.ensure_txn()?;
        let dirty = self.cache.take_dirty();
        let conn = &self.conn;
        let res: std::result::Result<(), crate::sqlite::SqliteError> = conn.internal(|| {
            let mut put = conn.prepare_cached(schema::KV_PUT)?;
            let mut del = conn.prepare_cached(schema::KV_DELETE)?;
            for (key, entry) in &dirty {
                match &entry.value {
                    Some(v) => put.run_borrowed(&[ValueRef::Text(key), ValueRef::Blob(v)])?,
                    None => del.run_borrowed(&[ValueRef::Text(key)])?,
                }
            }
            Ok(())
        });
        if let Err(e) = res {
            // The transaction may hold part of the flush: nothing about this
            // turn can be trusted any more.
            return Err(self.break_with(Error::sqlite(e)));
        }
        for (key, entry) in dirty {
            self.cache.flushed(key, entry);
        }
        Ok(())
    }

    /// Ends the turn: commits its writes as one transaction and returns the
    /// ticket the output gate waits on. The ticket covers this commit and
    /// every earlier confirmed one; a turn whose writes were all
    /// `allow_unconfirmed` (or that wrote nothing) gets the ticket of the
    /// last confirmed commit.
    pub fn end_turn(&mut self) -> Result<Ticket> {
        self.check_usable()?;
        if !self.savepoints.is_empty() {
            return Err(Error::invalid(
                "end_turn cannot be called inside transaction(); return from the closure first",
            ));
        }
        if !self.turn.open && !self.cache.has_dirty() {
            return Ok(Ticket::new(self.gate_seq, self.mark.clone()));
        }
        match self.commit_turn() {
            Ok(t) => Ok(t),
            Err(e) => Err(self.break_with(e)),
        }
    }

    fn commit_turn(&mut self) -> Result<Ticket> {
        self.flush_dirty()?;
        if !self.turn.wrote {
            if self.turn.open {
                self.internal_run(schema::COMMIT)?;
            }
            self.turn = Turn::default();
            return Ok(Ticket::new(self.gate_seq, self.mark.clone()));
        }
        self.maybe_vacuum()?;
        let seq = self.seq + 1;
        // Commit times are monotonic per object, whatever the clock does.
        let now = self.shared.config.clock.now_ms().max(self.last_time_ms);
        self.internal_run_with(
            schema::META_COMMIT,
            &[ValueRef::Integer(seq as i64), ValueRef::Integer(now as i64)],
        )?;
        self.internal_run(schema::COMMIT)?;
        self.seq = seq;
        self.last_time_ms = now;
        if self.turn.confirmed {
            self.gate_seq = seq;
        }
        self.turn = Turn::default();
        let commits = if self.shared.journal.is_some() || self.ship.is_some() {
            let frames = self.conn.wal_state().frames.get();
            let commits = self
                .tap
                .read_new(&self.conn, frames)
                .map_err(|e| Error::io(format!("read {}", self.tap.path().display()), e))?;
            if commits.is_empty() {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    format!("commit {seq} left no frames in the WAL"),
                ));
            }
            commits
        } else {
            Vec::new()
        };
        match (&self.shared.journal, &self.shared.syncer) {
            (Some(j), _) => {
                let first = seq + 1 - commits.len() as u64;
                j.append(&self.mark, &self.id, self.epoch, first, now, &commits)?;
            }
            (None, Some(s)) => s.committed(&self.mark, seq),
            (None, None) => unreachable!("a store has a journal or a syncer"),
        }
        let checkpoint_pages = self.shared.config.tuning.checkpoint_pages;
        let synced = match &mut self.ship {
            Some(ship) => ship.committed(
                &self.conn,
                &mut self.tap,
                &commits,
                seq,
                now,
                checkpoint_pages,
            )?,
            None => gate::checkpoint_when_long(&self.conn, checkpoint_pages)?,
        };
        if let (true, Some(j)) = (synced, &self.shared.journal) {
            j.synced(&self.id, self.epoch, seq);
        }
        Ok(Ticket::new(self.gate_seq, self.mark.clone()))
    }

    /// Returns free pages to the file system once enough have piled up.
    fn maybe_vacuum(&mut self) -> Result<()> {
        let threshold = self.shared.config.tuning.vacuum_free_pages;
        if threshold == 0 || self.shared.config.tuning.auto_vacuum_full {
            return Ok(());
        }
        let free = self.internal_query_i64(schema::FREELIST_COUNT)?;
        if free as u64 >= threshold as u64 {
            self.internal_run("PRAGMA incremental_vacuum")?;
        }
        Ok(())
    }

    /// Ends the turn and returns a ticket for every commit so far, including
    /// `allow_unconfirmed` ones.
    pub fn sync(&mut self) -> Result<Ticket> {
        self.end_turn()?;
        Ok(Ticket::new(self.seq, self.mark.clone()))
    }

    /// Ends the turn, waits until everything is durable, and closes.
    pub fn close(mut self) -> Result<u64> {
        let t = self.sync()?;
        t.wait()
    }

    /// Live size of the database: (page_count - freelist_count) * page_size.
    pub fn database_size(&mut self) -> Result<u64> {
        self.check_usable()?;
        let pages = self.internal_query_i64(schema::PAGE_COUNT)?;
        let free = self.internal_query_i64(schema::FREELIST_COUNT)?;
        let size = self.internal_query_i64(schema::PAGE_SIZE)?;
        Ok(((pages - free).max(0) * size) as u64)
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when SQLite reports "ok".
    pub fn integrity_check(&mut self) -> Result<()> {
        self.check_usable()?;
        let report = self
            .conn
            .internal(|| {
                let mut st = self.conn.prepare_cached("PRAGMA integrity_check")?;
                let mut lines = Vec::new();
                while st.step()? {
                    lines.push(String::from_utf8_lossy(&st.column_bytes(0)).into_owned());
                }
                Ok(lines)
            })
            .map_err(Error::sqlite)?;
        if report.len() == 1 && report[0] == "ok" {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Corruption,
                format!("integrity_check: {}", report.join("; ")),
            ))
        }
    }
}

/// An `SQLITE_FULL` met while the object's filesystem has almost no space
/// left is the disk filling up, not `max_object_bytes`: say so.
fn name_full_disk(dir: &std::path::Path, e: Error) -> Error {
    if !e.is_sqlite_full() {
        return e;
    }
    match crate::fsutil::free_bytes(dir) {
        Some(free) if free < crate::fsutil::LOW_SPACE_BYTES => e.disk_full(dir, free),
        _ => e,
    }
}
