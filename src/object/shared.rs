//! What every object of a store shares: the configuration, the syncer, the
//! shipper and cluster membership, and the set of objects open in this
//! process. The store builds it; objects hold it.

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::ObjectLocks;
use crate::background::Background;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::durability::Syncer;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::journal::Journal;
use crate::pitr::Bucket;
use crate::ship::Shipper;

/// Where the object directories live under the data directory.
pub(crate) const OBJECTS_DIR: &str = "objects";

pub(crate) struct Shared {
    /// Cluster mode; declared first so that it leaves (deleting the lease)
    /// while the runtime still runs.
    pub(crate) cluster: Option<Arc<Cluster>>,
    pub(crate) config: Config,
    /// How `Local` durability is reached: the store journal, or (with the
    /// journal disabled) the per-object syncer. Exactly one is set.
    pub(crate) journal: Option<Journal>,
    pub(crate) syncer: Option<Syncer>,
    pub(crate) shipper: Option<Arc<Shipper>>,
    /// Every object by name, with its next alarm (`catalog.rs`).
    pub(crate) catalog: Arc<Catalog>,
    open: Mutex<HashSet<ObjectId>>,
    /// Which process has which object (`lock.rs`).
    pub(crate) locks: Arc<ObjectLocks>,
    /// The store's async runtime, held for its `Drop`; declared last so
    /// it goes after everything that spawns on it.
    _background: Background,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Before the runtime goes: the shared log's last indexes and span
        // ends are tracked tasks, which the runtime's drop waits for.
        if let Some(sh) = &self.shipper {
            sh.shutdown();
        }
    }
}

impl Shared {
    pub(crate) fn new(
        config: Config,
        background: Background,
        journal: Option<Journal>,
        shipper: Option<Arc<Shipper>>,
        cluster: Option<Arc<Cluster>>,
        catalog: Arc<Catalog>,
        locks: Arc<ObjectLocks>,
    ) -> Shared {
        Shared {
            cluster,
            syncer: journal
                .is_none()
                .then(|| Syncer::start(config.sync_threads)),
            journal,
            config,
            shipper,
            catalog,
            locks,
            open: Mutex::new(HashSet::new()),
            _background: background,
        }
    }

    /// The shipper, or an error saying that PITR needs a bucket.
    pub(crate) fn shipper(&self) -> Result<&Arc<Shipper>> {
        self.shipper.as_ref().ok_or_else(|| {
            Error::invalid("point-in-time recovery needs a bucket; this store's bucket is disabled")
        })
    }

    /// Runs `f(bucket)` on the store's runtime and waits for it; fails
    /// when the store has no bucket.
    pub(crate) fn on_bucket<T, Fut>(&self, f: impl FnOnce(Bucket) -> Fut) -> Result<T>
    where
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.shipper()?.on_bucket(f)
    }

    pub(crate) fn bucket(&self) -> Option<&Bucket> {
        self.shipper.as_ref().map(|s| &s.bucket)
    }

    pub(crate) fn object_dir(&self, id: &ObjectId) -> PathBuf {
        id.dir_under(&self.config.data_dir.join(OBJECTS_DIR))
    }

    /// Claims `id` for one handle in this process.
    pub(crate) fn claim(self: &Arc<Self>, id: ObjectId, name: &str) -> Result<OpenGuard> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if !open.insert(id) {
            return Err(Error::new(
                ErrorKind::Locked,
                format!("object `{name}` is already open in this process"),
            ));
        }
        Ok(OpenGuard {
            shared: self.clone(),
            id,
        })
    }
}

/// Releases the in-process claim on an object when its handle goes away.
pub(crate) struct OpenGuard {
    shared: Arc<Shared>,
    id: ObjectId,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
    }
}
