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

use std::path::Path;

use super::OBJECTS_DIR;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::journal::{Journal, ReplayFile};
use crate::sqlite::wal;

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
    let Some(_lock) = super::open::lock_object(&dir)? else {
        // Another process of this boot has it open: it replayed the journal
        // itself when its store opened, before it could open the object.
        return Ok(());
    };
    let (epoch, seq) = position(&dir, &id)?;
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
    let (_, now) = position(&dir, &id)?;
    if now != last {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!("object {id} replayed to commit {last} but opens at commit {now}"),
        ));
    }
    tracing::info!(object = %id, from = seq, to = last, "replayed commits from the store journal");
    Ok(())
}

/// The (epoch, seq) an object's database opens at, as SQLite recovers it.
fn position(dir: &Path, id: &ObjectId) -> Result<(u64, u64)> {
    match super::restore::local_position(dir)? {
        Some(b) => Ok((b.epoch(), b.seq())),
        None => Err(Error::new(
            ErrorKind::Corruption,
            format!(
                "the store journal holds commits of object {id}, whose database in {} is gone \
                 or unreadable",
                dir.display()
            ),
        )),
    }
}
