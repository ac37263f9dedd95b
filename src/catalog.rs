//! The store catalog: one SQLite database per store (`catalog.db`) that
//! lists every object by name, with its creation time and the earliest
//! time one of its alarms may be due. Listing and the runtime's start read
//! it instead of every object's files.
//!
//! It is an index of what the objects' own databases hold, kept so that
//! it never misses an object or an alarm that a durable commit made:
//! - a row is written when the object is created, before its creation
//!   commit is journaled;
//! - `alarm_ms` is lowered before a turn that sets an earlier alarm
//!   commits, and set exactly after; it may be early (an alarm that was
//!   deleted, or a turn that rolled back), never late. `0` means "unknown":
//!   the object must be opened to learn it;
//! - its commits are not fsynced on their own: the journal syncs the
//!   catalog before it retires a file (`Catalog::sync`), and replay after a
//!   power cut puts back the rows of every object the unretired files name.
//!
//! Other processes on the same store (the CLI while `amber serve` runs)
//! read and write it too: it uses SQLite's normal WAL locking, not the
//! exclusive mode of object databases.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::id::ObjectId;
use crate::sqlite::{Connection, SqliteError, Statement, ValueRef};

/// The catalog's file name under the data directory.
pub(crate) const CATALOG_FILE: &str = "catalog.db";

/// Checkpoint the catalog's WAL after this many commits.
const CHECKPOINT_EVERY: u64 = 1024;

/// Waits for another process's catalog write before giving up.
const BUSY_TIMEOUT_MS: u32 = 5_000;

/// `alarm_ms` of an object whose alarms are not known: open it to learn.
pub(crate) const ALARM_UNKNOWN: u64 = 0;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    alarm_ms INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS objects_by_name ON objects (name);
CREATE INDEX IF NOT EXISTS objects_by_alarm ON objects (alarm_ms) WHERE alarm_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS catalog_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ship_hints (
    id BLOB PRIMARY KEY,
    epoch INTEGER NOT NULL,
    shipped INTEGER NOT NULL,
    snapshot_seq INTEGER,
    log_bytes INTEGER NOT NULL,
    last_snapshot_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tombstones (
    id BLOB PRIMARY KEY,
    next_epoch INTEGER NOT NULL,
    deleted_ms INTEGER NOT NULL,
    local_gone INTEGER NOT NULL,
    purged INTEGER NOT NULL
) WITHOUT ROWID;
";
const BUILT_GET: &str = "SELECT value FROM catalog_meta WHERE key = 'built'";
const BUILT_SET: &str = "INSERT OR REPLACE INTO catalog_meta (key, value) VALUES ('built', 1)";
const INSERT: &str =
    "INSERT INTO objects (id, name, created_ms, alarm_ms) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (id) DO NOTHING";
const GET: &str = "SELECT name, alarm_ms FROM objects WHERE id = ?1";
const LOWER_ALARM: &str =
    "UPDATE objects SET alarm_ms = ?2 WHERE id = ?1 AND (alarm_ms IS NULL OR alarm_ms > ?2)";
const SET_ALARM: &str = "UPDATE objects SET alarm_ms = ?2 WHERE id = ?1";
const REMOVE: &str = "DELETE FROM objects WHERE id = ?1";
const PAGE: &str = "SELECT id, name FROM objects WHERE name > ?1 AND name >= ?2 \
     AND (?3 IS NULL OR name < ?3) ORDER BY name LIMIT ?4";
const ALARMED: &str = "SELECT id, name, alarm_ms FROM objects WHERE alarm_ms IS NOT NULL \
     AND id > ?1 ORDER BY id LIMIT ?2";
const COUNT: &str = "SELECT count(*) FROM objects";
const HINT_GET: &str = "SELECT epoch, shipped, snapshot_seq, log_bytes, last_snapshot_ms \
     FROM ship_hints WHERE id = ?1";
/// Never back within an epoch: a later epoch, or the same epoch at least
/// as far shipped.
const HINT_SET: &str = "INSERT INTO ship_hints (id, epoch, shipped, snapshot_seq, log_bytes, \
     last_snapshot_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET \
     epoch = excluded.epoch, shipped = excluded.shipped, snapshot_seq = excluded.snapshot_seq, \
     log_bytes = excluded.log_bytes, last_snapshot_ms = excluded.last_snapshot_ms \
     WHERE excluded.epoch > ship_hints.epoch \
     OR (excluded.epoch = ship_hints.epoch AND excluded.shipped >= ship_hints.shipped)";
const HINT_REMOVE: &str = "DELETE FROM ship_hints WHERE id = ?1";
const TOMB_SET: &str =
    "INSERT OR REPLACE INTO tombstones (id, next_epoch, deleted_ms, local_gone, purged) \
     VALUES (?1, ?2, ?3, 0, 0)";
const TOMB_GET: &str =
    "SELECT next_epoch, deleted_ms, local_gone, purged FROM tombstones WHERE id = ?1";
const TOMB_LOCAL_GONE: &str = "UPDATE tombstones SET local_gone = 1 WHERE id = ?1";
const TOMB_PURGED: &str = "UPDATE tombstones SET purged = 1 WHERE id = ?1 AND next_epoch = ?2";
const TOMB_PENDING: &str = "SELECT id, next_epoch, deleted_ms, local_gone, purged FROM tombstones \
     WHERE local_gone = 0 OR (purged = 0 AND deleted_ms <= ?1) ORDER BY id";

/// An object's row, as `Catalog::get` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// `None`: no alarm; `Some(ALARM_UNKNOWN)`: not known.
    pub(crate) alarm_ms: Option<u64>,
}

/// How far an object's log is known to be shipped (a hint: never ahead
/// of the bucket, and never moved back within an epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShipHint {
    pub(crate) epoch: u64,
    pub(crate) shipped: u64,
    pub(crate) snapshot_seq: Option<u64>,
    pub(crate) log_bytes: u64,
    pub(crate) last_snapshot_ms: u64,
}

/// What is left of a deleted object: the epoch its name starts at when
/// reused (every journal record and bucket key of an older epoch is the
/// deleted object's), and what of it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) next_epoch: u64,
    pub(crate) deleted_ms: u64,
    /// Its local directory is removed.
    pub(crate) local_gone: bool,
    /// Its bucket keys below `next_epoch` are removed.
    pub(crate) purged: bool,
}

pub(crate) struct Catalog {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Written since the last `sync`.
    dirty: AtomicBool,
    commits: AtomicU64,
}

impl Catalog {
    /// Opens (creating) the catalog of the store at `data_dir`. Returns it
    /// and whether it still has to be built from the object directories
    /// (a store from before the catalog, or a catalog that was lost).
    /// `sync_commits`: fsync every commit (for stores without the journal,
    /// where nothing else would).
    /// `vfs`: the registered SQLite VFS to open it through (the objects'
    /// `Tuning::sqlite_vfs`; `None` in production).
    pub(crate) fn open(
        data_dir: &Path,
        sync_commits: bool,
        vfs: Option<&str>,
    ) -> Result<(Catalog, bool)> {
        let path = data_dir.join(CATALOG_FILE);
        let new_files = !path.exists() || !wal_path(&path).exists();
        let conn = Connection::open_vfs(&path, "\u{1}none", Vec::new(), vfs)?;
        let sync = if sync_commits { "FULL" } else { "NORMAL" };
        conn.execute_batch_internal(&format!(
            "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
             PRAGMA synchronous = {sync};"
        ))
        .map_err(ctx(&path))?;
        conn.execute_batch_internal(SCHEMA).map_err(ctx(&path))?;
        let built = conn
            .internal(|| {
                let mut st = conn.prepare_cached(BUILT_GET)?;
                st.step()
            })
            .map_err(ctx(&path))?;
        if new_files {
            // The WAL and the database file are new directory entries.
            crate::fsutil::sync_dir(data_dir)?;
        }
        let cat = Catalog {
            conn: Mutex::new(conn),
            path,
            dirty: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        };
        Ok((cat, !built))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one write; checkpoints now and then, since amber's connections
    /// turn SQLite's automatic checkpoint off.
    fn write(&self, sql: &str, params: &[ValueRef<'_>]) -> Result<()> {
        let conn = self.lock();
        let changed = conn
            .internal(|| {
                let mut st = conn.prepare_cached(sql)?;
                st.bind_all(params)?;
                st.run()?;
                Ok(conn.changes())
            })
            .map_err(ctx(&self.path))?;
        if changed > 0 {
            self.dirty.store(true, Ordering::Release);
            if self.commits.fetch_add(1, Ordering::Relaxed) % CHECKPOINT_EVERY
                == CHECKPOINT_EVERY - 1
            {
                // Another process reading may hold it back; the next try
                // goes further.
                let _ = conn.checkpoint_passive();
            }
        }
        Ok(())
    }

    /// Runs one query; `row` maps each row, `None` skipping it.
    fn read<T>(
        &self,
        sql: &str,
        params: &[ValueRef<'_>],
        mut row: impl FnMut(&Statement<'_>) -> Option<T>,
    ) -> Result<Vec<T>> {
        let conn = self.lock();
        conn.internal(|| {
            let mut st = conn.prepare_cached(sql)?;
            st.bind_all(params)?;
            let mut out = Vec::new();
            while st.step()? {
                out.extend(row(&st));
            }
            Ok(out)
        })
        .map_err(ctx(&self.path))
    }

    /// Records a new object; a row that exists is kept.
    pub(crate) fn insert(
        &self,
        id: &ObjectId,
        name: &str,
        created_ms: u64,
        alarm_ms: Option<u64>,
    ) -> Result<()> {
        self.write(
            INSERT,
            &[
                blob(id),
                ValueRef::Text(name),
                int(created_ms),
                opt_int(alarm_ms),
            ],
        )
    }

    pub(crate) fn get(&self, id: &ObjectId) -> Result<Option<Entry>> {
        let rows = self.read(GET, &[blob(id)], |st| {
            Some(Entry {
                name: text_at(st, 0),
                alarm_ms: opt_u64_at(st, 1),
            })
        })?;
        Ok(rows.into_iter().next())
    }

    /// Makes the row's alarm no later than `ms`.
    pub(crate) fn lower_alarm(&self, id: &ObjectId, ms: u64) -> Result<()> {
        self.write(LOWER_ALARM, &[blob(id), int(ms)])
    }

    /// Sets the row's alarm to exactly `ms` (`None`: no alarm).
    pub(crate) fn set_alarm(&self, id: &ObjectId, ms: Option<u64>) -> Result<()> {
        self.write(SET_ALARM, &[blob(id), opt_int(ms)])
    }

    pub(crate) fn remove(&self, id: &ObjectId) -> Result<()> {
        self.write(REMOVE, &[blob(id)])
    }

    pub(crate) fn ship_hint(&self, id: &ObjectId) -> Result<Option<ShipHint>> {
        let rows = self.read(HINT_GET, &[blob(id)], |st| {
            Some(ShipHint {
                epoch: u64_at(st, 0),
                shipped: u64_at(st, 1),
                snapshot_seq: opt_u64_at(st, 2),
                log_bytes: u64_at(st, 3),
                last_snapshot_ms: u64_at(st, 4),
            })
        })?;
        Ok(rows.into_iter().next())
    }

    /// Records `h`, unless it would move the hint back within its epoch.
    pub(crate) fn set_ship_hint(&self, id: &ObjectId, h: &ShipHint) -> Result<()> {
        self.write(
            HINT_SET,
            &[
                blob(id),
                int(h.epoch),
                int(h.shipped),
                opt_int(h.snapshot_seq),
                int(h.log_bytes),
                int(h.last_snapshot_ms),
            ],
        )
    }

    pub(crate) fn remove_ship_hint(&self, id: &ObjectId) -> Result<()> {
        self.write(HINT_REMOVE, &[blob(id)])
    }

    /// Deletes object `id`: its row goes and a tombstone takes its place,
    /// in one transaction, fsynced before this returns. From then on the
    /// object is deleted, whatever a crash leaves of its files.
    pub(crate) fn delete(&self, id: &ObjectId, next_epoch: u64, now_ms: u64) -> Result<()> {
        {
            let conn = self.lock();
            let run = |sql: &str, params: &[ValueRef<'_>]| {
                let mut st = conn.prepare_cached(sql)?;
                st.bind_all(params)?;
                st.run()
            };
            conn.internal(|| {
                conn.execute_batch_internal("BEGIN IMMEDIATE")?;
                let res = run(REMOVE, &[blob(id)])
                    .and_then(|()| run(HINT_REMOVE, &[blob(id)]))
                    .and_then(|()| run(TOMB_SET, &[blob(id), int(next_epoch), int(now_ms)]));
                match res {
                    Ok(()) => conn.execute_batch_internal("COMMIT"),
                    Err(e) => {
                        let _ = conn.execute_batch_internal("ROLLBACK");
                        Err(e)
                    }
                }
            })
            .map_err(ctx(&self.path))?;
        }
        self.dirty.store(true, Ordering::Release);
        self.sync(true).map(drop)
    }

    pub(crate) fn tombstone(&self, id: &ObjectId) -> Result<Option<Tombstone>> {
        let rows = self.read(TOMB_GET, &[blob(id)], |st| Some(tombstone_at(st, 0)))?;
        Ok(rows.into_iter().next())
    }

    pub(crate) fn set_local_gone(&self, id: &ObjectId) -> Result<()> {
        self.write(TOMB_LOCAL_GONE, &[blob(id)])
    }

    /// Records that the bucket keys below `next_epoch` are gone; a later
    /// delete (a higher `next_epoch`) has more to purge.
    pub(crate) fn set_purged(&self, id: &ObjectId, next_epoch: u64) -> Result<()> {
        self.write(TOMB_PURGED, &[blob(id), int(next_epoch)])
    }

    /// Tombstones with something left to remove: their local files, or
    /// bucket history deleted at or before `purge_by_ms`.
    pub(crate) fn unfinished_deletes(
        &self,
        purge_by_ms: u64,
    ) -> Result<Vec<(ObjectId, Tombstone)>> {
        self.read(TOMB_PENDING, &[int(purge_by_ms)], |st| {
            Some((id_of(&st.column_bytes(0))?, tombstone_at(st, 1)))
        })
    }

    /// Marks the catalog as complete: every object directory is in it.
    pub(crate) fn set_built(&self) -> Result<()> {
        self.write(BUILT_SET, &[])?;
        self.sync(false).map(drop)
    }

    /// Up to `limit` objects whose names start with `prefix` and sort after
    /// `after`, in name order (bytewise UTF-8).
    pub(crate) fn page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(ObjectId, String)>> {
        let end = prefix_end(prefix);
        let params = [
            ValueRef::Text(after),
            ValueRef::Text(prefix),
            end.as_deref().map_or(ValueRef::Null, ValueRef::Text),
            int(limit as u64),
        ];
        self.read(PAGE, &params, |st| {
            Some((id_of(&st.column_bytes(0))?, text_at(st, 1)))
        })
    }

    /// Up to `limit` objects with an alarm (or one not known), in id order
    /// after `after`: (id, name, alarm_ms).
    pub(crate) fn alarmed(
        &self,
        after: Option<&ObjectId>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, String, u64)>> {
        let after = ValueRef::Blob(after.map_or(&[][..], |a| &a.as_bytes()[..]));
        self.read(ALARMED, &[after, int(limit as u64)], |st| {
            Some((id_of(&st.column_bytes(0))?, text_at(st, 1), u64_at(st, 2)))
        })
    }

    pub(crate) fn count(&self) -> Result<u64> {
        let rows = self.read(COUNT, &[], |st| Some(u64_at(st, 0)))?;
        Ok(rows.into_iter().next().unwrap_or(0))
    }

    /// Makes every catalog write so far durable: fsyncs its WAL. Called by
    /// the journal before it retires a file, whose replay would otherwise
    /// be what puts lost rows back.
    /// `force`: also when this process wrote nothing (another process of
    /// this boot may have). Returns whether it fsynced.
    pub(crate) fn sync(&self, force: bool) -> Result<bool> {
        if !self.dirty.swap(false, Ordering::AcqRel) && !force {
            return Ok(false);
        }
        // No lock: a write after the flag was cleared sets it again, and
        // every write the caller needs synced came before the call.
        let wal = wal_path(&self.path);
        let res = match File::open(&wal) {
            Ok(f) => crate::fsutil::synced(&wal, false, || f.sync_data()),
            // Checkpointed and removed by another process: in the database.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        res.map(|()| true).map_err(|e| {
            self.dirty.store(true, Ordering::Release);
            Error::io(format!("fsync {}", wal.display()), e)
        })
    }
}

fn tombstone_at(st: &Statement<'_>, i: usize) -> Tombstone {
    Tombstone {
        next_epoch: u64_at(st, i),
        deleted_ms: u64_at(st, i + 1),
        local_gone: st.column_i64(i + 2) != 0,
        purged: st.column_i64(i + 3) != 0,
    }
}

fn blob(id: &ObjectId) -> ValueRef<'_> {
    ValueRef::Blob(id.as_bytes())
}

fn int(v: u64) -> ValueRef<'static> {
    ValueRef::Integer(to_i64(v))
}

fn opt_int(v: Option<u64>) -> ValueRef<'static> {
    v.map_or(ValueRef::Null, int)
}

fn u64_at(st: &Statement<'_>, i: usize) -> u64 {
    st.column_i64(i).max(0) as u64
}

fn opt_u64_at(st: &Statement<'_>, i: usize) -> Option<u64> {
    (!st.column_is_null(i)).then(|| u64_at(st, i))
}

fn text_at(st: &Statement<'_>, i: usize) -> String {
    String::from_utf8_lossy(&st.column_bytes(i)).into_owned()
}

fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

fn id_of(bytes: &[u8]) -> Option<ObjectId> {
    <[u8; 32]>::try_from(bytes).ok().map(ObjectId::from_bytes)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn ctx(path: &Path) -> impl Fn(SqliteError) -> Error + '_ {
    move |e| {
        let full = e.code == crate::sqlite::codes::FULL;
        let err = Error::sqlite(e);
        if full {
            // Not an object's size limit: the catalog has no limit.
            Error::new(
                crate::ErrorKind::StorageFull,
                format!("catalog {}: the disk is full", path.display()),
            )
        } else {
            err.prefixed(format!("catalog {}", path.display()))
        }
    }
}

/// The least string greater than every string that starts with `prefix`,
/// or `None` when there is none (empty prefix, or all `char::MAX`).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_every_string_with_the_prefix() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        let end = prefix_end("room-").unwrap();
        for s in ["room-", "room-\u{10FFFF}\u{10FFFF}", "room-zzz"] {
            assert!(s < end.as_str(), "{s}");
        }
        assert!("room." >= end.as_str());
    }

    fn ids(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 32])
    }

    #[test]
    fn pages_by_prefix_and_alarms_only_move_earlier_until_set() {
        let dir = tempfile::tempdir().unwrap();
        let (cat, unbuilt) = Catalog::open(dir.path(), false, None).unwrap();
        assert!(unbuilt);
        for (i, name) in ["b1", "a2", "a1", "b2", "c"].iter().enumerate() {
            cat.insert(&ids(i as u8), name, 7, None).unwrap();
        }
        // An existing row is kept.
        cat.insert(&ids(0), "other", 9, Some(1)).unwrap();
        assert_eq!(cat.get(&ids(0)).unwrap().unwrap().name, "b1");
        let names = |v: Vec<(ObjectId, String)>| v.into_iter().map(|o| o.1).collect::<Vec<_>>();
        assert_eq!(
            names(cat.page("", "", 100).unwrap()),
            ["a1", "a2", "b1", "b2", "c"]
        );
        assert_eq!(names(cat.page("b", "", 100).unwrap()), ["b1", "b2"]);
        assert_eq!(names(cat.page("", "a2", 2).unwrap()), ["b1", "b2"]);
        assert_eq!(names(cat.page("a", "a1", 10).unwrap()), ["a2"]);
        cat.lower_alarm(&ids(1), 50).unwrap();
        cat.lower_alarm(&ids(1), 80).unwrap();
        assert_eq!(cat.get(&ids(1)).unwrap().unwrap().alarm_ms, Some(50));
        cat.set_alarm(&ids(1), Some(80)).unwrap();
        assert_eq!(cat.get(&ids(1)).unwrap().unwrap().alarm_ms, Some(80));
        cat.set_alarm(&ids(3), Some(ALARM_UNKNOWN)).unwrap();
        let alarmed = cat.alarmed(None, 10).unwrap();
        assert_eq!(alarmed.len(), 2);
        assert_eq!(cat.alarmed(Some(&ids(1)), 10).unwrap()[0].0, ids(3));
        cat.remove(&ids(1)).unwrap();
        assert_eq!(cat.get(&ids(1)).unwrap(), None);
        assert_eq!(cat.count().unwrap(), 4);
        cat.set_built().unwrap();
        drop(cat);
        let (cat, unbuilt) = Catalog::open(dir.path(), false, None).unwrap();
        assert!(!unbuilt);
        assert_eq!(cat.count().unwrap(), 4);
    }
}
