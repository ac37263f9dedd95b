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
pub(crate) mod schema;
#[cfg(feature = "serde")]
mod serde_kv;
mod ship;
pub(crate) use ship::HINT_FILE;
mod sql;
mod txn;

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::durability::{Ticket, Watermark};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::sqlite::{Connection, Limit, ValueRef};
use crate::store::{OpenGuard, StoreInner};

use cache::KvCache;
pub use kv::{ListOptions, ReadOptions, WriteOptions};
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

/// An open object. One handle per object per process; `Send`, not `Sync`:
/// a turn runs on one thread at a time.
pub struct Object {
    // Declared first so it drops (closing SQLite) before the lock is freed.
    conn: Connection,
    store: Arc<StoreInner>,
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
    savepoints: Vec<TouchSet>,
    /// Log shipping, when the store has a bucket.
    ship: Option<ship::ObjectShip>,
    epoch: u64,
    /// Cluster mode: the ownership this handle was opened under.
    fence: Option<crate::cluster::Fence>,
    _lock: File,
    _guard: OpenGuard,
}

impl Object {
    pub(crate) fn open(
        store: Arc<StoreInner>,
        guard: OpenGuard,
        id: ObjectId,
        name: &str,
    ) -> Result<Object> {
        let dir = store.object_dir(&id);
        fsutil::create_dir_durable(&dir)?;
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("object `{name}` is open in another process"),
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", lock_path.display()), e))
            }
        }
        // Cluster mode: take the object (or learn who has it) before
        // touching its files; a new epoch starts from the bucket.
        let activation = match &store.cluster {
            Some(c) => {
                let act = activate::activate(c, &store, id, &dir)?;
                Some(act)
            }
            None => None,
        };
        // A restore scheduled by `restore_on_next_open` runs first, while
        // the database is closed and the object locked.
        let restored = match &activation {
            Some((_, user_restore)) => *user_restore,
            None => crate::pitr_api::restore_pending(&store, id, &dir)?,
        };
        let activation = activation.map(|(a, _)| a);
        let db_path = dir.join("db");
        let is_new = !db_path.exists();
        let conn = Connection::open(
            &db_path,
            schema::RESERVED_PREFIX,
            store.config.allowed_pragmas.clone(),
        )?;
        configure(&conn, &store, is_new)?;
        let (seq, time_ms) = init_schema(&conn, name)?;
        if is_new {
            // Make the new database and its directory entries durable
            // before anyone can commit to it.
            conn.checkpoint_truncate()?;
            fsutil::sync_dir(&dir)?;
        }
        let name_path = dir.join("name");
        if !name_path.exists() {
            fsutil::write_atomic(&name_path, name.as_bytes())?;
        }
        let mut epoch = ship::read_epoch(&conn)?;
        if let Some(a) = &activation {
            if epoch != a.epoch {
                crate::pitr_api::stamp_epoch(&conn, a.epoch)?;
                epoch = a.epoch;
            }
        }
        let fence = activation.map(|a| a.fence);
        let remote_level = store.config.durability == crate::config::DurabilityLevel::Remote;
        let plan = match &store.shipper {
            Some(sh) => Some(ship::ObjectShip::prepare(
                sh,
                id,
                &dir,
                seq,
                time_ms,
                epoch,
                store.config.clock.now_ms(),
            )?),
            None => None,
        };
        let remote_seq = plan.as_ref().map_or(0, |p| p.shipped());
        let mark = Arc::new(Watermark::new(
            dir.join("db-wal"),
            dir.clone(),
            seq,
            remote_seq,
            remote_level,
        ));
        let ship = match (plan, &store.shipper) {
            (Some(plan), Some(sh)) => Some(ship::ObjectShip::start(
                sh.clone(),
                id,
                &dir,
                &conn,
                plan,
                mark.clone(),
                seq,
                time_ms,
                fence.clone(),
            )?),
            _ => None,
        };
        if restored && ship.is_some() {
            // The new timeline is restorable once its base snapshot lands;
            // wait for it so a restore is undoable as soon as open returns.
            if !mark.wait_remote(seq, std::time::Duration::from_secs(60)) {
                return Err(Error::new(
                    ErrorKind::Io,
                    "the restored timeline's first snapshot could not be shipped",
                ));
            }
        }
        Ok(Object {
            conn,
            mark,
            id,
            name: name.to_owned(),
            dir,
            cache: KvCache::new(store.config.tuning.kv_cache_bytes),
            turn: Turn::default(),
            seq,
            gate_seq: seq,
            last_time_ms: time_ms,
            broken: None,
            alarm: None,
            savepoints: Vec::new(),
            ship,
            epoch,
            fence,
            store,
            _lock: lock,
            _guard: guard,
        })
    }

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
    pub fn current_bookmark(&self) -> crate::pitr::Bookmark {
        crate::pitr::Bookmark::new(self.epoch, self.seq)
    }

    pub(crate) fn store_inner(&self) -> &Arc<StoreInner> {
        &self.store
    }

    /// Waits (up to a minute) until every commit so far is in the bucket.
    pub(crate) fn wait_shipped(&self, seq: u64) -> bool {
        self.ship.is_none()
            || self
                .mark
                .wait_remote(seq, std::time::Duration::from_secs(60))
    }

    /// Commit time (ms since the epoch) of the last commit.
    pub fn last_commit_ms(&self) -> u64 {
        self.last_time_ms
    }

    /// Bytes held by the clean KV cache (bounded by `Tuning::kv_cache_bytes`).
    pub fn cache_bytes(&self) -> usize {
        self.cache.clean_bytes()
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
        let err = if matches!(cause.kind(), ErrorKind::Broken | ErrorKind::Fenced) {
            cause
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
        err
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
        let now = self.store.config.clock.now_ms().max(self.last_time_ms);
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
        self.store.syncer.committed(&self.mark, seq);
        if let Some(ship) = &mut self.ship {
            ship.capture(self.conn.wal_state().frames.get(), seq, now)?;
        }
        self.maybe_checkpoint()?;
        self.maybe_snapshot()?;
        Ok(Ticket::new(self.gate_seq, self.mark.clone()))
    }

    /// Returns free pages to the file system once enough have piled up.
    fn maybe_vacuum(&mut self) -> Result<()> {
        let threshold = self.store.config.tuning.vacuum_free_pages;
        if threshold == 0 || self.store.config.tuning.auto_vacuum_full {
            return Ok(());
        }
        let free = self.internal_query_i64(schema::FREELIST_COUNT)?;
        if free as u64 >= threshold as u64 {
            self.internal_run("PRAGMA incremental_vacuum")?;
        }
        Ok(())
    }

    /// Copies the WAL back into the database once it is long. SQLite's own
    /// automatic checkpoint is off; this is the only place one happens, so
    /// log shipping can later gate it on what is already shipped.
    fn maybe_checkpoint(&mut self) -> Result<()> {
        let frames = self.conn.wal_state().frames.get();
        if frames < self.store.config.tuning.checkpoint_pages {
            return Ok(());
        }
        if self.ship.is_some() {
            // Only frames already in the bucket may leave the WAL: the WAL
            // is what ships them again after a crash. Under sustained load
            // this is the writer's backpressure: it waits for the shipper.
            if !self
                .mark
                .wait_remote(self.seq, std::time::Duration::from_secs(10))
            {
                return Ok(());
            }
        }
        {
            self.conn.checkpoint_passive()?;
            self.conn.wal_state().frames.set(0);
        }
        Ok(())
    }

    /// Takes a snapshot once the log since the last one outgrows the
    /// database, everything is shipped, and the minimum interval passed.
    fn maybe_snapshot(&mut self) -> Result<()> {
        let Some(ship) = &self.ship else {
            return Ok(());
        };
        if ship.state.lock().log_bytes < 64 * 1024 {
            return Ok(());
        }
        let pages = self.internal_query_i64(schema::PAGE_COUNT)? as u64;
        let now = self.store.config.clock.now_ms();
        if !ship.snapshot_due(pages * 4096, now) {
            return Ok(());
        }
        // The snapshot replaces the WAL (it is taken after a truncating
        // checkpoint), so everything in the WAL must be in the bucket first.
        if !self
            .mark
            .wait_remote(self.seq, std::time::Duration::from_secs(10))
        {
            return Ok(());
        }
        let ship = self.ship.as_mut().expect("checked above");
        {
            ship.snapshot(&self.conn, &self.dir, self.seq, self.last_time_ms)?;
            self.conn.wal_state().frames.set(0);
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

/// The smallest column limit amber can run with: `_amber_meta` has six
/// columns and `sqlite_schema` five.
pub const MIN_COLUMNS: usize = 8;

/// Applies per-object pragmas and limits.
fn configure(conn: &Connection, store: &StoreInner, is_new: bool) -> Result<()> {
    let cfg = &store.config;
    let l = &cfg.limits;
    let clamp = |v: usize| v.min(i32::MAX as usize) as i32;
    conn.set_limit(Limit::SqlLength, clamp(l.max_sql_length));
    // amber's own tables (and sqlite_schema) need a few columns.
    conn.set_limit(Limit::Columns, clamp(l.max_columns.max(MIN_COLUMNS)));
    conn.set_limit(Limit::Variables, clamp(l.max_params));
    conn.set_limit(
        Limit::Length,
        clamp(l.max_row_bytes.max(l.max_value_bytes + 1024)),
    );
    conn.set_limit(Limit::LikePatternLength, clamp(l.max_like_pattern));
    let t = &cfg.tuning;
    let mut sql = String::new();
    if is_new {
        // Only takes effect before the first table exists.
        sql.push_str(if t.auto_vacuum_full {
            "PRAGMA auto_vacuum = FULL;"
        } else {
            "PRAGMA auto_vacuum = INCREMENTAL;"
        });
    }
    // Exclusive locking: no shared-memory file, one fd fewer, and a second
    // process that slips past the lock file still cannot write.
    sql.push_str("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;");
    // NORMAL: commits do not fsync (the syncer does, shared), checkpoints do.
    sql.push_str("PRAGMA synchronous = NORMAL;");
    sql.push_str(&format!(
        "PRAGMA cache_size = -{}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA journal_size_limit = {};",
        t.page_cache_kib,
        64 << 20
    ));
    let page_size = 4096u64;
    let max_pages = (l.max_object_bytes / page_size).clamp(16, u32::MAX as u64 - 1);
    sql.push_str(&format!("PRAGMA max_page_count = {max_pages};"));
    conn.execute_batch_internal(&sql).map_err(Error::sqlite)?;
    Ok(())
}

/// Creates the reserved tables if needed; returns (seq, time_ms).
fn init_schema(conn: &Connection, name: &str) -> Result<(u64, u64)> {
    conn.internal(
        || -> std::result::Result<(u64, u64, i64, String), crate::sqlite::SqliteError> {
            conn.execute_batch_internal("BEGIN")?;
            conn.execute_batch_internal(schema::CREATE)?;
            let mut init = conn.prepare_cached(schema::META_INIT)?;
            init.bind_all(&[
                ValueRef::Integer(schema::SCHEMA_VERSION),
                ValueRef::Text(name),
            ])?;
            init.run()?;
            drop(init);
            conn.execute_batch_internal("COMMIT")?;
            let mut st = conn.prepare_cached(schema::META_READ)?;
            st.step()?;
            let version = st.column_i64(0);
            let stored = String::from_utf8_lossy(&st.column_bytes(1)).into_owned();
            Ok((
                st.column_i64(2) as u64,
                st.column_i64(3) as u64,
                version,
                stored,
            ))
        },
    )
    .map_err(Error::sqlite)
    .and_then(|(seq, t, version, stored)| {
        if version > schema::SCHEMA_VERSION {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "object uses schema version {version}; this amber reads up to {}",
                    schema::SCHEMA_VERSION
                ),
            ));
        }
        if stored != name {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!("object directory holds `{stored}`, not `{name}`"),
            ));
        }
        Ok((seq, t))
    })
}
