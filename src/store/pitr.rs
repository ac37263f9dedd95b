//! Point-in-time recovery as the store offers it, by object name:
//! history, bookmarks, restore into a file, verify, GC and the bucket
//! probe. Each call runs on the store's runtime and reads only the bucket.

use std::path::{Path, PathBuf};

use super::Store;
use crate::error::Result;
use crate::id::ObjectId;
use crate::object::restore;
use crate::pitr::diagnose::{diagnose, Diagnosis};
use crate::pitr::history::load_history;
use crate::pitr::{
    gc_object, restore_to_file, verify_object, Bookmark, Bucket, GcReport, History, RestoreOptions,
    RestoreReport, RestoreTarget, VerifyReport,
};

impl Store {
    /// The bucket commits are shipped to, if any.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.shared.bucket()
    }

    /// Snapshots, segments and epochs the bucket holds for `name`.
    pub fn history(&self, name: &str) -> Result<History> {
        let id = self.id_from_name(name)?;
        self.history_by_id(id)
    }

    pub fn history_by_id(&self, id: ObjectId) -> Result<History> {
        self.index_now(id);
        self.shared
            .on_bucket(move |b| async move { load_history(&b, &id).await })
    }

    /// The last commit of `name` at or before `t_ms` (ms since the Unix
    /// epoch), on the timeline that was live then.
    pub fn bookmark_for_time(&self, name: &str, t_ms: u64) -> Result<Bookmark> {
        let id = self.id_from_name(name)?;
        self.index_now(id);
        restore::bookmark_for_time(&self.shared, id, t_ms)
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
        let out: PathBuf = out.to_path_buf();
        self.index_now(id);
        self.shared
            .on_bucket(move |b| async move { restore_to_file(&b, &id, &target, &out, &opts).await })
    }

    /// Shared log: index `id`'s recent runs first, so the read that follows
    /// fetches its own byte ranges rather than scanning tables of contents.
    fn index_now(&self, id: ObjectId) {
        if let Some(sh) = &self.shared.shipper {
            sh.index_now(id);
        }
    }

    /// Deletes what no restore inside the retention window needs.
    pub fn gc(&self, name: &str) -> Result<GcReport> {
        let id = self.id_from_name(name)?;
        let now = self.config().clock.now_ms();
        let retention = self.config().pitr.retention;
        self.shared
            .on_bucket(move |b| async move { gc_object(&b, &id, now, retention).await })
    }

    /// Probes the bucket's conditional writes and ranged reads.
    pub fn diagnose(&self) -> Result<Diagnosis> {
        let nonce = self.config().clock.now_ms() ^ u64::from(std::process::id()) << 40;
        self.shared
            .on_bucket(move |b| async move { Ok(diagnose(&b, nonce).await) })
    }

    /// Checks every CRC and the log's continuity for `name`.
    pub fn verify(&self, name: &str) -> Result<VerifyReport> {
        let id = self.id_from_name(name)?;
        self.verify_by_id(id)
    }

    pub fn verify_by_id(&self, id: ObjectId) -> Result<VerifyReport> {
        self.index_now(id);
        self.shared
            .on_bucket(move |b| async move { verify_object(&b, &id).await })
    }
}
