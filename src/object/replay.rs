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

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{ObjectLocks, OBJECTS_DIR};
use crate::catalog::{Catalog, ALARM_UNKNOWN};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::journal::{Journal, ReplayFile, ReplayRecord};
use crate::sqlite::wal::{self, WalCommit};

/// Replays every object `file` names, then lets the journal retire it.
/// Each object's catalog row is put back too: a power cut may have taken
/// the row of an object created since the catalog's last sync, or the
/// write that moved its alarm earlier; an object whose records were never
/// acknowledged and whose files are gone leaves the catalog.
pub(crate) fn replay_file(
    journal: &Journal,
    config: &Config,
    catalog: &Catalog,
    locks: &Arc<ObjectLocks>,
    file: ReplayFile,
) -> Result<()> {
    let ids: Vec<ObjectId> = file.objects().collect();
    for id in ids {
        replay_object(config, catalog, locks, &file, id)?;
    }
    // The rows go to disk before the file that could put them back.
    catalog.sync(false)?;
    journal.replayed(file)
}

fn replay_object(
    config: &Config,
    catalog: &Catalog,
    locks: &Arc<ObjectLocks>,
    file: &ReplayFile,
    id: ObjectId,
) -> Result<()> {
    let dir = id.dir_under(&config.data_dir.join(OBJECTS_DIR));
    // Records of a deleted object's epochs stay deleted; a reused name's
    // object starts at the tombstone's epoch.
    let min_epoch = catalog.tombstone(&id)?.map_or(0, |t| t.next_epoch);
    let recs: Vec<ReplayRecord> = file
        .records(&id)
        .iter()
        .filter(|r| r.head.epoch >= min_epoch)
        .copied()
        .collect();
    if recs.is_empty() {
        return Ok(());
    }
    // Records no later record vouches for may be the unsynced tail of a
    // power cut, so they were never acknowledged (see `gap`).
    let unvouched = !recs.iter().any(|r| file.vouched(r));
    if !dir.is_dir() {
        if creation(&recs).is_some() {
            // The cut took the directory of an object created without fsync.
            fsutil::create_dir_durable(&dir)?;
        } else if unvouched {
            return catalog.remove(&id);
        } else {
            return Err(gone(&dir, &id));
        }
    }
    let Some(_lock) = locks.try_lock(&id)? else {
        // Another process of this boot has it open: it replayed the journal
        // itself when its store opened, before it could open the object.
        return Ok(());
    };
    replay_locked(&dir, file, &recs, &id, unvouched)?;
    match super::restore::local_name(&dir)? {
        Some(name) => {
            let created = creation(&recs).map_or(0, |r| r.head.time_ms);
            catalog.insert(&id, &name, created, Some(ALARM_UNKNOWN))?;
            catalog.set_alarm(&id, Some(ALARM_UNKNOWN))
        }
        None => catalog.remove(&id),
    }
}

/// Puts the journal's commits of object `id` back into its WAL; the caller
/// holds the object's lock.
fn replay_locked(
    dir: &Path,
    file: &ReplayFile,
    recs: &[ReplayRecord],
    id: &ObjectId,
    unvouched: bool,
) -> Result<()> {
    let id = *id;
    let (epoch, seq) = match super::restore::local_position(dir)? {
        Some(b) => (b.epoch(), b.seq()),
        None => match creation(recs) {
            // Created without an fsync, and the cut took the database (or
            // its first page): build it again from its creation commit.
            Some(r) => {
                rebuild(dir, &file.commit(&r)?)?;
                (r.head.epoch, 0)
            }
            None if unvouched => return Ok(()),
            None => return Err(gone(dir, &id)),
        },
    };
    let mut todo: Vec<_> = recs
        .iter()
        .filter(|r| r.head.epoch == epoch && r.head.seq > seq)
        .copied()
        .collect();
    todo.sort_by_key(|r| r.head.seq);
    todo.dedup_by_key(|r| r.head.seq);
    if todo.is_empty() {
        return Ok(());
    }
    let gap = (0..todo.len()).find(|&i| todo[i].head.seq != seq + 1 + i as u64);
    if let Some(i) = gap {
        // An acknowledged commit's fsync covered every record appended
        // before it, in this file and in earlier ones. So if none of the
        // records past the gap is vouched for (written into a file that an
        // fsync had already covered past it), the gap is a power cut's
        // unsynced tail, here or in an earlier file, and they go with it.
        if todo[i..].iter().any(|r| file.vouched(r)) {
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "object {id} is at commit {seq} of epoch {epoch}, but the store journal \
                     lacks commit {} and holds later ones",
                    seq + 1 + i as u64
                ),
            ));
        }
        todo.truncate(i);
        if todo.is_empty() {
            return Ok(());
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
    let (_, now) = position(dir, &id)?;
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
        None => Err(gone(dir, id)),
    }
}

fn gone(dir: &Path, id: &ObjectId) -> Error {
    Error::new(
        ErrorKind::Corruption,
        format!(
            "the store journal holds commits of object {id}, whose database in {} is gone \
             or unreadable",
            dir.display()
        ),
    )
}

/// The object's creation commit (seq 0), when the journal holds it.
fn creation(recs: &[ReplayRecord]) -> Option<ReplayRecord> {
    recs.iter().find(|r| r.head.seq == 0).copied()
}

/// Writes a database from its creation commit, which holds every page of
/// a fresh database, and drops what a cut left of the old files.
fn rebuild(dir: &Path, c: &WalCommit) -> Result<()> {
    let ps = c.page_size as u64;
    let covered: std::collections::BTreeSet<u32> = c.pages.iter().map(|(n, _)| *n).collect();
    if c.db_size_pages == 0 || (1..=c.db_size_pages).any(|n| !covered.contains(&n)) {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!(
                "the creation commit of the object in {} does not hold every page",
                dir.display()
            ),
        ));
    }
    fsutil::create_dir_durable(dir)?;
    for stale in ["db-wal", "db-journal"] {
        match std::fs::remove_file(dir.join(stale)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("remove {}", dir.join(stale).display()),
                    e,
                ))
            }
        }
    }
    let path = dir.join("db");
    let io = |e| Error::io(format!("rebuild {}", path.display()), e);
    let f = std::fs::File::create(&path).map_err(io)?;
    for (n, page) in &c.pages {
        if *n <= c.db_size_pages {
            f.write_all_at(page, (u64::from(*n) - 1) * ps).map_err(io)?;
        }
    }
    f.set_len(u64::from(c.db_size_pages) * ps).map_err(io)?;
    f.sync_all().map_err(io)?;
    fsutil::sync_dir(dir)
}
