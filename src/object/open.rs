//! Opening an object: lock it, let cluster mode claim it, run a pending
//! restore, open and configure its database, and start shipping.

use std::sync::Arc;

use super::cache::KvCache;
use super::{activate, restore, schema, Object, Shared, Turn};
use crate::catalog::{Entry, ALARM_UNKNOWN};
use crate::config::DurabilityLevel;
use crate::durability::Watermark;
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::ship::{gate, ObjectShip};
use crate::sqlite::wal::WalTap;
use crate::sqlite::{Connection, Limit, ValueRef, PAGE_SIZE};

/// WAL files are truncated back to this after a checkpoint.
const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;

impl Object {
    /// Opens object `id` called `name`, creating its database on first
    /// use. At most one handle per object exists at a time: a second open,
    /// from this process or another, fails with `ErrorKind::Locked`.
    pub(crate) fn open(shared: Arc<Shared>, id: ObjectId, name: &str) -> Result<Object> {
        let guard = shared.claim(id, name)?;
        let dir = shared.object_dir(&id);
        // A deleted object's name: finish what a crash left of the delete;
        // the new object starts at the tombstone's epoch, above every
        // journal record and bucket key of the deleted one.
        let row = shared.catalog.get(&id)?;
        let tomb = shared.catalog.tombstone(&id)?;
        if let (None, Some(t)) = (&row, &tomb) {
            super::finish_local(&shared, &id, t)?;
        }
        // Also when the row is there but the database is not (a kill
        // between the two, below): a new database of a reused name never
        // starts at an epoch the deleted one wrote.
        let first_epoch = tomb.map_or(0, |t| t.next_epoch);
        // The row goes in before the database exists, so that no crash
        // leaves an object the catalog does not list.
        let row = match row {
            Some(r) => r,
            None => {
                let alarm = dir.join("db").exists().then_some(ALARM_UNKNOWN);
                let now = shared.config.clock.now_ms();
                shared.catalog.insert(&id, name, now, alarm)?;
                Entry {
                    name: name.to_owned(),
                    alarm_ms: alarm,
                }
            }
        };
        // A new object can ride in the store journal: its directory, files
        // and schema go to disk without an fsync, and its creation commit
        // (seq 0, every page of the fresh database) is journaled ahead of
        // its first commit, so a power cut that takes them is undone by
        // replay (`object/replay.rs`). Cluster mode stamps epochs from the
        // bucket first, and without the journal nothing could replay.
        let fast = shared.journal.is_some() && shared.cluster.is_none() && is_new_dir(&dir);
        if fast {
            // The shard directory is shared by 1/256 of all objects.
            if let Some(shard) = dir.parent() {
                fsutil::create_dir_durable(shard)?;
            }
            fsutil::create_dir(&dir)?;
        } else {
            fsutil::create_dir_durable(&dir)?;
        }
        let Some(lock) = shared.locks.try_lock(&id)? else {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("object `{name}` is open in another process"),
            ));
        };
        // Cluster mode: take the object (or learn who has it) before
        // touching its files; a new epoch starts from the bucket.
        let activation = match &shared.cluster {
            Some(c) => {
                let act = activate::activate(c, &shared, id, &dir)?;
                Some(act)
            }
            None => None,
        };
        // A restore scheduled by `restore_on_next_open` runs first, while
        // the database is closed and the object locked.
        let restored = match &activation {
            Some((_, user_restore)) => *user_restore,
            None => restore::restore_pending(&shared, id, &dir)?,
        };
        let activation = activation.map(|(a, _)| a);
        let db_path = dir.join("db");
        let is_new = !db_path.exists();
        let fast = fast && is_new;
        let conn = Connection::open_vfs(
            &db_path,
            schema::RESERVED_PREFIX,
            shared.config.allowed_pragmas.clone(),
            shared.config.tuning.sqlite_vfs.as_deref(),
        )?;
        configure(&conn, &shared, is_new, fast)?;
        let (seq, time_ms) = init_schema(&conn, name, first_epoch)?;
        if fast {
            conn.execute_batch_internal("PRAGMA synchronous = NORMAL")
                .map_err(Error::sqlite)?;
        } else if is_new {
            // Make the new database and its directory entries durable
            // before anyone can commit to it.
            conn.checkpoint_truncate()?;
            fsutil::sync_dir(&dir)?;
        }
        let catalog_alarm = sync_catalog(&conn, &shared, &id, row)?;
        let mut epoch = read_epoch(&conn)?;
        // Used only here: a live object need not keep them prepared.
        for sql in [schema::META_INIT, schema::META_READ, schema::ALARM_EARLIEST] {
            conn.forget_cached(sql);
        }
        if let Some(a) = &activation {
            if epoch != a.epoch {
                restore::stamp_epoch(&conn, a.epoch)?;
                epoch = a.epoch;
            }
        }
        let fence = activation.map(|a| a.fence);
        let remote_level = shared.config.durability == DurabilityLevel::Remote;
        // The tap starts at the WAL's end; shipping learns what it holds.
        let mut tap = WalTap::new(dir.join("db-wal"));
        let in_wal = if shared.journal.is_some() || shared.shipper.is_some() {
            tap.read_all(&conn)
                .map_err(|e| Error::io(format!("read {}", tap.path().display()), e))?
        } else {
            Vec::new()
        };
        let plan = match &shared.shipper {
            Some(sh) => Some(ObjectShip::prepare(
                sh,
                &shared.catalog,
                id,
                &dir,
                seq,
                time_ms,
                epoch,
                shared.config.clock.now_ms(),
                &in_wal,
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
        if fast {
            // The creation commit is seq 0; the first commit's record
            // follows it into the same file, so one fsync covers both.
            let j = shared
                .journal
                .as_ref()
                .expect("fast creation needs the journal");
            j.created(&id);
            j.append(&mark, &id, epoch, 0, time_ms, &in_wal)?;
        }
        if let (false, false, Some(j)) = (fast, in_wal.is_empty(), &shared.journal) {
            // The WAL holds commits this process never journaled (a writer
            // killed between its WAL write and its journal append, or an
            // append that failed): they are in the page cache only, yet
            // the next commit would build on them and count as durable.
            // Make them durable first (cheap on a clean WAL). The WAL's
            // directory entry is older than this process, and durable: a
            // creation syncs it, or the journal's fresh-object rule does.
            if !j.covers(&id, epoch, seq) {
                fsutil::sync_file_if_exists(&dir.join("db-wal"))?;
            }
        }
        drop(in_wal);
        let ship = match (plan, &shared.shipper) {
            (Some(plan), Some(sh)) => Some(ObjectShip::start(
                sh.clone(),
                id,
                &dir,
                &conn,
                &mut tap,
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
            if !mark.wait_remote(seq, gate::SHIPPED_WAIT) {
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
            cache: KvCache::new(shared.config.tuning.kv_cache_bytes),
            turn: Turn::default(),
            seq,
            gate_seq: seq,
            last_time_ms: time_ms,
            broken: None,
            alarm: None,
            catalog_alarm,
            savepoints: Vec::new(),
            tap,
            ship,
            epoch,
            fence,
            shared,
            _lock: lock,
            _guard: guard,
        })
    }
}

/// The object's name, UTF-8, in objects made before the store catalog.
pub(crate) const NAME_FILE: &str = "name";

/// Makes the object's catalog row (`row`, already there) hold its earliest
/// alarm: a restore, a deleted alarm or a lost write may have moved it.
/// Returns the alarm the catalog now holds.
fn sync_catalog(
    conn: &Connection,
    shared: &Shared,
    id: &ObjectId,
    row: Entry,
) -> Result<Option<u64>> {
    let earliest = super::alarm::earliest(conn)?;
    let cat = &shared.catalog;
    match row {
        r if r.alarm_ms == earliest => {}
        r => {
            // The catalog may be early, never late: before it moves an
            // alarm later, what the object holds now must be durable, or
            // a power cut could bring back the earlier alarm.
            let later = match (r.alarm_ms, earliest) {
                (Some(c), Some(e)) => e > c,
                (Some(_), None) => true,
                (None, _) => false,
            };
            if later {
                for f in ["db-wal", "db"] {
                    fsutil::sync_file_if_exists(&shared.object_dir(id).join(f))?;
                }
            }
            cat.set_alarm(id, earliest)?;
        }
    }
    Ok(earliest)
}

/// Whether `dir` holds no object yet: absent, or left empty.
fn is_new_dir(dir: &std::path::Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut rd) => rd.next().is_none(),
        Err(_) => true,
    }
}

/// The smallest column limit amber can run with: `_amber_meta` has six
/// columns and `sqlite_schema` five.
const MIN_COLUMNS: usize = 8;

/// Applies per-object pragmas and limits.
fn configure(conn: &Connection, shared: &Shared, is_new: bool, fast: bool) -> Result<()> {
    let cfg = &shared.config;
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
    // Exclusive locking: no shared-memory file, one fd fewer, and a second
    // process that slips past the lock file still cannot write.
    let mut sql = String::from("PRAGMA locking_mode = EXCLUSIVE;");
    if fast {
        // Created without an fsync: the store journal holds the creation
        // commit. Setting auto_vacuum and switching to WAL each write page
        // 1 in rollback mode; with an in-memory rollback journal no
        // `db-journal` file is made (one a power cut could bring back).
        // NORMAL is set once the schema is in.
        sql.push_str("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;");
    }
    if is_new {
        // Only takes effect before the first table exists.
        sql.push_str(if t.auto_vacuum_full {
            "PRAGMA auto_vacuum = FULL;"
        } else {
            "PRAGMA auto_vacuum = INCREMENTAL;"
        });
    }
    sql.push_str("PRAGMA journal_mode = WAL;");
    if !fast {
        // NORMAL: commits do not fsync (the store journal does, shared by
        // every object), checkpoints do.
        sql.push_str("PRAGMA synchronous = NORMAL;");
    }
    sql.push_str(&format!(
        "PRAGMA cache_size = -{}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT};",
        t.page_cache_kib,
    ));
    let max_pages = (l.max_object_bytes / u64::from(PAGE_SIZE)).clamp(16, u32::MAX as u64 - 1);
    sql.push_str(&format!("PRAGMA max_page_count = {max_pages};"));
    conn.execute_batch_internal(&sql).map_err(Error::sqlite)?;
    Ok(())
}

/// Creates the reserved tables if needed, a new object at `first_epoch`;
/// returns (seq, time_ms).
fn init_schema(conn: &Connection, name: &str, first_epoch: u64) -> Result<(u64, u64)> {
    conn.internal(
        || -> std::result::Result<(u64, u64, i64, String), crate::sqlite::SqliteError> {
            conn.execute_batch_internal("BEGIN")?;
            conn.execute_batch_internal(schema::CREATE)?;
            let mut init = conn.prepare_cached(schema::META_INIT)?;
            init.bind_all(&[
                ValueRef::Integer(schema::SCHEMA_VERSION),
                ValueRef::Text(name),
                ValueRef::Integer(i64::try_from(first_epoch).unwrap_or(i64::MAX)),
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

/// The epoch recorded in an object's database.
fn read_epoch(conn: &Connection) -> Result<u64> {
    conn.internal(|| {
        let mut st = conn.prepare_cached(schema::META_READ)?;
        st.step()?;
        Ok(st.column_i64(4).max(0) as u64)
    })
    .map_err(Error::sqlite)
}
