//! Restoring a live object: `restore_on_next_open` leaves a marker, and
//! the next open rebuilds the database from the bucket as a new epoch
//! before SQLite opens it. Also the other open-time work on the object's
//! files: stamping an epoch, setting local files aside, reading the local
//! position.

use std::path::Path;

use super::{Object, Shared};
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::pitr::history::{load_history, write_manifest, Manifest};
use crate::pitr::{restore_to_file, Bookmark, RestoreOptions, RestoreTarget};
use crate::ship::HINT_FILE;
use crate::sqlite::{Connection, ValueRef};

/// Marker file: restore this object to the bookmark inside on next open.
pub(crate) const RESTORE_MARKER: &str = "restore-pending";
/// Where a restore builds the database before it is swapped in.
const RESTORE_TMP: &str = "restore.tmp";

/// The last commit of `id` at or before `t_ms` (ms since the Unix epoch),
/// on the timeline that was live then. Refuses times before retention.
pub(crate) fn bookmark_for_time(shared: &Shared, id: ObjectId, t_ms: u64) -> Result<Bookmark> {
    let retention = shared.config.pitr.retention.as_millis() as u64;
    let now = shared.config.clock.now_ms();
    if t_ms.saturating_add(retention) < now {
        return Err(Error::invalid(format!(
            "{t_ms} ms is outside the retention window ({} days)",
            retention / 86_400_000
        )));
    }
    shared.on_bucket(move |b| async move {
        let h = load_history(&b, &id).await?;
        crate::pitr::history::bookmark_for_time(&b, &h, t_ms).await
    })
}

impl Object {
    /// The last commit at or before `t_ms`. See `Store::bookmark_for_time`.
    pub fn bookmark_for_time(&self, t_ms: u64) -> Result<Bookmark> {
        bookmark_for_time(&self.shared, self.id, t_ms)
    }

    /// Arranges for the object to be restored to `target` the next time
    /// it is opened (SQL, KV and alarms together), and returns the bookmark
    /// of the current state, which is in the bucket by the time this
    /// returns, so the restore can be undone by restoring to it.
    ///
    /// The restore starts a new timeline (epoch): the history after
    /// `target` on the old one stays restorable.
    pub fn restore_on_next_open(&mut self, target: Bookmark) -> Result<Bookmark> {
        // The target must be restorable.
        let id = self.id();
        let h = self
            .shared
            .on_bucket(move |b| async move { load_history(&b, &id).await })?;
        let ok = h.epoch(target.epoch()).is_some_and(|e| {
            e.first_seq().is_some_and(|f| f <= target.seq())
                && e.last_seq().is_some_and(|l| target.seq() <= l)
        }) || (target.epoch() == self.current_bookmark().epoch()
            && target.seq() <= self.seq()
            && h.epoch(target.epoch())
                .and_then(|e| e.first_seq())
                .is_some_and(|f| f <= target.seq()));
        if !ok {
            return Err(Error::invalid(format!(
                "bookmark {target} is not restorable"
            )));
        }
        let t = self.sync()?;
        t.wait()?;
        let current = self.current_bookmark();
        if !self.wait_shipped(current.seq()) {
            return Err(Error::new(
                ErrorKind::Io,
                "the current state could not be shipped, so the restore could not be undone; \
                 not scheduling it",
            ));
        }
        let text = match &self.shared.cluster {
            Some(c) => format!("{target} {} {}", c.incarnation(), self.epoch()),
            None => target.to_string(),
        };
        fsutil::write_atomic(&self.dir().join(RESTORE_MARKER), text.as_bytes())?;
        Ok(current)
    }
}

/// A pending `restore_on_next_open`: the target, and in cluster mode the
/// (incarnation, epoch) that asked for it. A marker is honoured only by
/// the same ownership: after the object moved, it is stale.
pub(crate) struct PendingRestore {
    pub(crate) target: Bookmark,
    pub(crate) owner: Option<(String, u64)>,
}

pub(crate) fn pending_restore(dir: &Path) -> Result<Option<PendingRestore>> {
    let marker = dir.join(RESTORE_MARKER);
    let text = match std::fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", marker.display()), e)),
    };
    let mut f = text.split_whitespace();
    let target: Bookmark = f.next().unwrap_or("").parse()?;
    let owner = match (f.next(), f.next().and_then(|e| e.parse::<u64>().ok())) {
        (Some(inc), Some(epoch)) => Some((inc.to_owned(), epoch)),
        _ => None,
    };
    Ok(Some(PendingRestore { target, owner }))
}

/// Drops a restore marker that no longer applies.
pub(crate) fn discard_restore_marker(dir: &Path) -> Result<()> {
    let marker = dir.join(RESTORE_MARKER);
    match std::fs::remove_file(&marker) {
        Ok(()) => fsutil::sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove {}", marker.display()), e)),
    }
}

/// Runs a pending restore before the object's database is opened:
/// rebuild the file from the bucket, give it a new epoch, swap it in.
pub(crate) fn restore_pending(shared: &Shared, id: ObjectId, dir: &Path) -> Result<bool> {
    match pending_restore(dir)? {
        Some(p) => {
            restore_into(shared, id, dir, p.target, None)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Rebuilds the object's database in `dir` at `target` from the bucket,
/// as the start of epoch `epoch` (default: one above every epoch in the
/// bucket), and clears any pending-restore marker.
pub(crate) fn restore_into(
    shared: &Shared,
    id: ObjectId,
    dir: &Path,
    target: Bookmark,
    epoch: Option<u64>,
) -> Result<()> {
    let marker = dir.join(RESTORE_MARKER);
    let tmp = dir.join(RESTORE_TMP);
    let _ = std::fs::remove_file(&tmp);
    let tmp2 = tmp.clone();
    let (report, history) = shared.on_bucket(move |bucket| async move {
        let r = restore_to_file(
            &bucket,
            &id,
            &RestoreTarget::Bookmark(target),
            &tmp2,
            &RestoreOptions::default(),
        )
        .await?;
        let h = match epoch {
            Some(_) => None,
            None => Some(load_history(&bucket, &id).await?),
        };
        Ok::<_, Error>((r, h))
    })?;
    let epoch = match (epoch, history) {
        (Some(e), _) => e,
        (None, Some(h)) => h.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1,
        (None, None) => unreachable!("history is loaded when no epoch is given"),
    };
    {
        // Stamp the new epoch into the restored database itself.
        let vfs = shared.config.tuning.sqlite_vfs.as_deref();
        let conn = Connection::open_vfs(&tmp, "_amber_", Vec::new(), vfs)?;
        conn.execute_batch_internal("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;")?;
        stamp_epoch(&conn, epoch)?;
    }
    let tmp_wal = dir.join(format!("{RESTORE_TMP}-wal"));
    let _ = fsutil::removable(&tmp_wal).and_then(|()| std::fs::remove_file(&tmp_wal));
    let m = Manifest {
        epoch,
        parent: Some(report.bookmark),
        started_ms: shared.config.clock.now_ms(),
    };
    let clock = shared.config.clock.clone();
    shared.on_bucket(move |b| async move { write_manifest(&b, &*clock, &id, m).await })?;
    for old in [dir.join("db-wal"), dir.join(HINT_FILE)] {
        match fsutil::removable(&old).and_then(|()| std::fs::remove_file(&old)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", old.display()), e)),
        }
    }
    shared.catalog.remove_ship_hint(&id)?;
    let db = dir.join("db");
    fsutil::renamable(&tmp, &db)
        .and_then(|()| std::fs::rename(&tmp, &db))
        .map_err(|e| Error::io(format!("install restored database in {}", dir.display()), e))?;
    fsutil::sync_dir(dir)?;
    match fsutil::removable(&marker).and_then(|()| std::fs::remove_file(&marker)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("remove {}", marker.display()), e)),
    }
    fsutil::sync_dir(dir)?;
    Ok(())
}

/// Writes `epoch` into `_amber_meta` and checkpoints it into the file.
pub(crate) fn stamp_epoch(conn: &Connection, epoch: u64) -> Result<()> {
    conn.internal(|| {
        let mut st = conn.prepare_cached("UPDATE _amber_meta SET epoch = ?1 WHERE id = 1")?;
        st.bind_all(&[ValueRef::Integer(epoch as i64)])?;
        st.run()
    })?;
    conn.checkpoint_truncate()?;
    Ok(())
}

/// Moves the object's database files aside (`db.aside-<ms>`, and its WAL
/// as `db.aside-<ms>-wal`) instead of deleting them: they may hold commits
/// the bucket lacks (a store that ran with local durability before joining
/// a cluster). Removes the ship hint, which described them.
pub(crate) fn set_aside_local(dir: &Path, now_ms: u64) -> Result<()> {
    let db = dir.join("db");
    if db.exists() {
        let aside = dir.join(format!("db.aside-{now_ms}"));
        std::fs::rename(&db, &aside)
            .map_err(|e| Error::io(format!("move aside {}", db.display()), e))?;
        let wal = dir.join("db-wal");
        if wal.exists() {
            std::fs::rename(&wal, dir.join(format!("db.aside-{now_ms}-wal")))
                .map_err(|e| Error::io(format!("move aside {}", wal.display()), e))?;
        }
    }
    let _ = std::fs::remove_file(dir.join(HINT_FILE));
    fsutil::sync_dir(dir)
}

/// The (epoch, last commit) of the database in `dir`, if there is one.
pub(crate) fn local_position(dir: &Path) -> Result<Option<Bookmark>> {
    Ok(local_meta(dir)?.map(|(b, _)| b))
}

/// The name recorded in the object's database, when it has one.
pub(crate) fn local_name(dir: &Path) -> Result<Option<String>> {
    Ok(local_meta(dir)?.map(|(_, n)| n))
}

/// (epoch, seq) and name from `_amber_meta`, as SQLite recovers the files.
fn local_meta(dir: &Path) -> Result<Option<(Bookmark, String)>> {
    let db = dir.join("db");
    if !db.exists() {
        return Ok(None);
    }
    // A private reserved prefix, so amber's own tables are readable.
    let conn = Connection::open(&db, "\u{1}none", Vec::new())?;
    // The caller holds the object's lock; exclusive locking keeps SQLite
    // from making a `-shm` file for the WAL.
    conn.execute_batch_internal("PRAGMA locking_mode = EXCLUSIVE")
        .map_err(Error::sqlite)?;
    let meta = conn.internal(|| {
        let mut st =
            conn.prepare_cached("SELECT epoch, seq, name FROM _amber_meta WHERE id = 1")?;
        Ok::<_, crate::sqlite::SqliteError>(if st.step()? {
            Some((
                Bookmark::new(
                    st.column_i64(0).max(0) as u64,
                    st.column_i64(1).max(0) as u64,
                ),
                String::from_utf8_lossy(&st.column_bytes(2)).into_owned(),
            ))
        } else {
            None
        })
    });
    // A file without amber's table (never committed to) has no position.
    Ok(meta.unwrap_or(None))
}
