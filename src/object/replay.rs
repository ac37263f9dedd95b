//! Replaying the store journal into objects after a power cut.
//!
//! A commit is acknowledged once its journal record is fsynced; the
//! object's WAL got the same frames without an fsync, so a power cut may
//! have taken any tail of it. For each object named in a journal file from
//! an earlier boot, this opens the database as SQLite recovers it, reads
//! the commit it is at, and appends the journal's later commits of the
//! same epoch to the WAL as frames, which SQLite then replays on every
//! open. The object's lock is held throughout, so no handle can see the
//! object half replayed.

use std::fs::File;
use std::path::Path;

use super::{schema, OBJECTS_DIR};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::journal::{Journal, ReplayFile};
use crate::sqlite::wal;
use crate::sqlite::Connection;

/// Replays every object `file` names, then lets the journal retire it.
pub(crate) fn replay_file(journal: &Journal, config: &Config, file: ReplayFile) -> Result<()> {
    let ids: Vec<ObjectId> = file.objects().collect();
    for id in ids {
        replay_object(config, &file, id)?;
    }
    journal.replayed(file)
}

fn replay_object(config: &Config, file: &ReplayFile, id: ObjectId) -> Result<()> {
    let dir = id.dir_under(&config.data_dir.join(OBJECTS_DIR));
    let db_path = dir.join("db");
    if !db_path.exists() {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!(
                "the store journal holds commits of object {id}, whose database {} is gone",
                db_path.display()
            ),
        ));
    }
    let lock_path = dir.join("lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
    match lock.try_lock() {
        Ok(()) => {}
        // Another process of this boot has it open: it replayed the journal
        // itself when its store opened, before it could open the object.
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::io(format!("lock {}", lock_path.display()), e))
        }
    }
    let (seq, epoch) = position(config, &db_path)?;
    let mut todo: Vec<_> = file
        .records(&id)
        .iter()
        .filter(|r| r.head.epoch == epoch && r.head.seq > seq)
        .copied()
        .collect();
    todo.sort_by_key(|r| r.head.seq);
    todo.dedup_by_key(|r| r.head.seq);
    if todo.is_empty() {
        return Ok(());
    }
    for (i, r) in todo.iter().enumerate() {
        let want = seq + 1 + i as u64;
        if r.head.seq != want {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "object {id} is at commit {seq} of epoch {epoch}, but the store journal \
                     lacks commit {want} and holds later ones"
                ),
            ));
        }
    }
    let commits = todo
        .iter()
        .map(|r| file.commit(r))
        .collect::<Result<Vec<_>>>()?;
    let wal_path = dir.join("db-wal");
    wal::append_commits(&wal_path, &commits)
        .map_err(|e| Error::io(format!("replay into {}", wal_path.display()), e))?;
    let last = todo.last().expect("not empty").head.seq;
    let (now, _) = position(config, &db_path)?;
    if now != last {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!("object {id} replayed to commit {last} but opens at commit {now}"),
        ));
    }
    tracing::info!(object = %id, from = seq, to = last, "replayed commits from the store journal");
    Ok(())
}

/// The (seq, epoch) an object's database opens at, as SQLite recovers it.
fn position(config: &Config, db_path: &Path) -> Result<(u64, u64)> {
    let conn = Connection::open(
        db_path,
        schema::RESERVED_PREFIX,
        config.allowed_pragmas.clone(),
    )?;
    conn.execute_batch_internal("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;")
        .map_err(Error::sqlite)?;
    conn.internal(|| {
        let mut st = conn.prepare_cached(schema::META_READ)?;
        st.step()?;
        Ok((
            st.column_i64(2).max(0) as u64,
            st.column_i64(4).max(0) as u64,
        ))
    })
    .map_err(Error::sqlite)
}
