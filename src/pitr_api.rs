//! Point-in-time recovery as the store and its objects offer it:
//! bookmarks, history, verify, restore into a file, and restore of a live
//! object on its next open.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::object::Object;
use crate::pitr::history::{load_history, write_manifest, Manifest};
use crate::pitr::ship::Shipper;
use crate::pitr::{
    restore_to_file, verify_object, Bookmark, Bucket, History, RestoreOptions, RestoreReport,
    RestoreTarget, VerifyReport,
};
use crate::sqlite::{Connection, ValueRef};
use crate::store::{Store, StoreInner};

/// Marker file: restore this object to the bookmark inside on next open.
pub(crate) const RESTORE_MARKER: &str = "restore-pending";

fn shipper(inner: &StoreInner) -> Result<&Arc<Shipper>> {
    inner.shipper.as_ref().ok_or_else(|| {
        Error::invalid("point-in-time recovery needs a bucket; this store's bucket is disabled")
    })
}

impl Store {
    /// The bucket commits are shipped to, if any.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.inner().shipper.as_ref().map(|s| &s.bucket)
    }

    /// Snapshots, segments and epochs the bucket holds for `name`.
    pub fn history(&self, name: &str) -> Result<History> {
        let id = self.id_from_name(name)?;
        self.history_by_id(id)
    }

    pub fn history_by_id(&self, id: ObjectId) -> Result<History> {
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        sh.block_on(async move { load_history(&bucket, &id).await })
    }

    /// The last commit of `name` at or before `t_ms` (ms since the Unix
    /// epoch), on the timeline that was live then.
    pub fn bookmark_for_time(&self, name: &str, t_ms: u64) -> Result<Bookmark> {
        let id = self.id_from_name(name)?;
        let retention = self.config().pitr.retention.as_millis() as u64;
        let now = self.config().clock.now_ms();
        if t_ms.saturating_add(retention) < now {
            return Err(Error::invalid(format!(
                "{t_ms} ms is outside the retention window ({} days)",
                retention / 86_400_000
            )));
        }
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        sh.block_on(async move {
            let h = load_history(&bucket, &id).await?;
            crate::pitr::history::bookmark_for_time(&bucket, &h, t_ms).await
        })
    }

    /// Rebuilds `name` at `target` into a new SQLite file at `out`, from
    /// the bucket alone, without touching the live object.
    pub fn restore(
        &self,
        name: &str,
        target: RestoreTarget,
        out: &Path,
        opts: RestoreOptions,
    ) -> Result<RestoreReport> {
        let id = self.id_from_name(name)?;
        self.restore_by_id(id, target, out, opts)
    }

    pub fn restore_by_id(
        &self,
        id: ObjectId,
        target: RestoreTarget,
        out: &Path,
        opts: RestoreOptions,
    ) -> Result<RestoreReport> {
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        let out: PathBuf = out.to_path_buf();
        sh.block_on(async move { restore_to_file(&bucket, &id, &target, &out, &opts).await })
    }

    /// Deletes what no restore inside the retention window needs.
    pub fn gc(&self, name: &str) -> Result<crate::pitr::GcReport> {
        let id = self.id_from_name(name)?;
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        let now = self.config().clock.now_ms();
        let retention = self.config().pitr.retention;
        sh.block_on(async move { crate::pitr::gc_object(&bucket, &id, now, retention).await })
    }

    /// Probes the bucket's conditional writes and ranged reads.
    pub fn diagnose(&self) -> Result<crate::pitr::diagnose::Diagnosis> {
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        let nonce = self.config().clock.now_ms() ^ u64::from(std::process::id()) << 40;
        Ok(sh.block_on(async move { crate::pitr::diagnose::diagnose(&bucket, nonce).await }))
    }

    /// Checks every CRC and the log's continuity for `name`.
    pub fn verify(&self, name: &str) -> Result<VerifyReport> {
        let id = self.id_from_name(name)?;
        self.verify_by_id(id)
    }

    pub fn verify_by_id(&self, id: ObjectId) -> Result<VerifyReport> {
        let sh = shipper(self.inner())?;
        let bucket = sh.bucket.clone();
        sh.block_on(async move { verify_object(&bucket, &id).await })
    }
}

impl Object {
    /// The last commit at or before `t_ms`. See `Store::bookmark_for_time`.
    pub fn bookmark_for_time(&self, t_ms: u64) -> Result<Bookmark> {
        Store::from_inner(self.store_inner().clone()).bookmark_for_time(self.name(), t_ms)
    }

    /// Arranges for the object to be restored to `target` the next time
    /// it is opened (SQL, KV and alarms together), and returns the bookmark
    /// of the current state, which is in the bucket by the time this
    /// returns, so the restore can be undone by restoring to it.
    ///
    /// The restore starts a new timeline (epoch): the history after
    /// `target` on the old one stays restorable.
    pub fn restore_on_next_open(&mut self, target: Bookmark) -> Result<Bookmark> {
        let sh = shipper(self.store_inner())?.clone();
        // The target must be restorable.
        let id = self.id();
        let bucket = sh.bucket.clone();
        let h = sh.block_on(async move { load_history(&bucket, &id).await })?;
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
        let text = match &self.store_inner().cluster {
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
pub(crate) fn restore_pending(store: &StoreInner, id: ObjectId, dir: &Path) -> Result<bool> {
    match pending_restore(dir)? {
        Some(p) => {
            restore_into(store, id, dir, p.target, None)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Rebuilds the object's database in `dir` at `target` from the bucket,
/// as the start of epoch `epoch` (default: one above every epoch in the
/// bucket), and clears any pending-restore marker.
pub(crate) fn restore_into(
    store: &StoreInner,
    id: ObjectId,
    dir: &Path,
    target: Bookmark,
    epoch: Option<u64>,
) -> Result<()> {
    let marker = dir.join(RESTORE_MARKER);
    let sh = shipper(store)?.clone();
    let tmp = dir.join("restore.tmp");
    let _ = std::fs::remove_file(&tmp);
    let bucket = sh.bucket.clone();
    let tmp2 = tmp.clone();
    let (report, history) = sh.block_on(async move {
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
        let conn = Connection::open(&tmp, "_amber_", Vec::new())?;
        conn.execute_batch_internal("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;")?;
        stamp_epoch(&conn, epoch)?;
    }
    let _ = std::fs::remove_file(dir.join("restore.tmp-wal"));
    let bucket = sh.bucket.clone();
    let now = store.config.clock.now_ms();
    let m = Manifest {
        epoch,
        parent: Some(report.bookmark),
        started_ms: now,
    };
    sh.block_on(async move { write_manifest(&bucket, &id, m).await })?;
    let _ = std::fs::remove_file(dir.join("db-wal"));
    let _ = std::fs::remove_file(dir.join(crate::object::HINT_FILE));
    std::fs::rename(&tmp, dir.join("db"))
        .map_err(|e| Error::io(format!("install restored database in {}", dir.display()), e))?;
    fsutil::sync_dir(dir)?;
    match std::fs::remove_file(&marker) {
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
    let _ = std::fs::remove_file(dir.join(crate::object::HINT_FILE));
    fsutil::sync_dir(dir)
}

/// The (epoch, last commit) of the database in `dir`, if there is one.
pub(crate) fn local_position(dir: &Path) -> Result<Option<Bookmark>> {
    let db = dir.join("db");
    if !db.exists() {
        return Ok(None);
    }
    // A private reserved prefix, so amber's own tables are readable.
    let conn = Connection::open(&db, "\u{1}none", Vec::new())?;
    let pos = conn.internal(|| {
        let mut st = conn.prepare_cached("SELECT epoch, seq FROM _amber_meta WHERE id = 1")?;
        Ok::<_, crate::sqlite::SqliteError>(if st.step()? {
            Some(Bookmark::new(
                st.column_i64(0).max(0) as u64,
                st.column_i64(1).max(0) as u64,
            ))
        } else {
            None
        })
    });
    // A file without amber's table (never committed to) has no position.
    Ok(pos.unwrap_or(None))
}
