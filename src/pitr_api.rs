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
        fsutil::write_atomic(
            &self.dir().join(RESTORE_MARKER),
            target.to_string().as_bytes(),
        )?;
        Ok(current)
    }
}

/// The bookmark a pending `restore_on_next_open` asks for, if any.
pub(crate) fn pending_restore(dir: &Path) -> Result<Option<Bookmark>> {
    let marker = dir.join(RESTORE_MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(t) => Ok(Some(t.trim().parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", marker.display()), e)),
    }
}

/// Runs a pending restore before the object's database is opened:
/// rebuild the file from the bucket, give it a new epoch, swap it in.
pub(crate) fn restore_pending(store: &StoreInner, id: ObjectId, dir: &Path) -> Result<bool> {
    match pending_restore(dir)? {
        Some(target) => {
            restore_into(store, id, dir, target, None)?;
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

/// Cluster mode, a new epoch with nothing in the bucket to start from:
/// whatever this directory holds was never acknowledged (acknowledgement
/// needs the bucket), so it is moved aside, not deleted, and the object
/// starts empty.
pub(crate) fn set_aside_local(dir: &Path) -> Result<()> {
    let db = dir.join("db");
    if db.exists() {
        let aside = dir.join("db.unacknowledged");
        std::fs::rename(&db, &aside)
            .map_err(|e| Error::io(format!("move aside {}", db.display()), e))?;
        let wal = dir.join("db-wal");
        if wal.exists() {
            let _ = std::fs::rename(&wal, dir.join("db.unacknowledged-wal"));
        }
    }
    let _ = std::fs::remove_file(dir.join(crate::object::HINT_FILE));
    let _ = std::fs::remove_file(dir.join(RESTORE_MARKER));
    fsutil::sync_dir(dir)
}
