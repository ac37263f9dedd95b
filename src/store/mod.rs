//! The store: a data directory holding one SQLite database per object, the
//! secret key that maps names to ids, and what its objects share.
//!
//! Layout under the data directory:
//!
//! ```text
//! store.key                   32 random bytes: the key of the name hash
//! catalog.db, catalog.db-wal  every object by name, with its next alarm
//! journal/                    the store journal (`journal/`)
//! locks                       empty; an open object holds a one-byte lock in it
//!                             (`object/lock.rs`)
//! objects/<id[0..2]>/<id>/    one directory per object
//!     db, db-wal              the object's SQLite database and its WAL
//!     name                    the object's name (objects made before the catalog)
//! ```
//!
//! - `key.rs`: the store key, kept in step with the bucket's copy.
//! - `listing.rs`: building the catalog of a store made before it.
//! - `delete.rs`: deleting an object for good.
//! - `pitr.rs`: point-in-time recovery by object name.

mod delete;
mod key;
mod listing;
mod pitr;

use std::sync::Arc;

use crate::background::Background;
use crate::catalog::Catalog;
use crate::cluster::Cluster;
use crate::config::{BucketConfig, Config, DurabilityLevel};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::journal::{Journal, JournalStats};
use crate::object::{replay, Object, ObjectLocks, Shared, OBJECTS_DIR};
use crate::pitr::Bucket;
use crate::ship::Shipper;

pub use delete::BucketHistory;

/// A handle to a store. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    key: [u8; 32],
}

/// An object as listed by `Store::list_objects`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub id: ObjectId,
    pub name: String,
}

impl Store {
    /// Opens the store at `config.data_dir`, creating it if needed.
    pub fn open(config: Config) -> Result<Store> {
        fsutil::create_dir_durable(&config.data_dir.join(OBJECTS_DIR))?;
        let bucket = match &config.bucket {
            BucketConfig::Disabled => None,
            BucketConfig::Default => {
                let dir = config.data_dir.join("bucket");
                fsutil::create_dir_durable(&dir)?;
                let abs = dir
                    .canonicalize()
                    .map_err(|e| Error::io(format!("resolve {}", dir.display()), e))?;
                Some(Bucket::open(&format!("file://{}", abs.display()))?)
            }
            BucketConfig::Url(u) => Some(Bucket::open(u)?),
            BucketConfig::Bucket(b) => Some(b.clone()),
        };
        if bucket.is_none() && config.durability == DurabilityLevel::Remote {
            return Err(Error::invalid(
                "durability level Remote needs a bucket; the bucket is disabled",
            ));
        }
        let background = Background::start()?;
        let shipper = match bucket {
            Some(b) => Some(Arc::new(Shipper::new(
                background.spawner(),
                b,
                config.pitr.clone(),
                config.clock.clone(),
            )?)),
            None => None,
        };
        let key = match &shipper {
            Some(sh) => key::shared_key(&config.data_dir, sh)?,
            None => key::load_or_create_key(&config.data_dir)?,
        };
        let cluster = match (&config.cluster, &shipper) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(Error::invalid(
                    "cluster mode needs a bucket shared by every host; the bucket is disabled",
                ))
            }
            (Some(_), Some(_)) if config.durability != DurabilityLevel::Remote => {
                return Err(Error::invalid(
                    "cluster mode needs durability level Remote: a commit is acknowledged only \
                     once it is in the bucket and ownership is re-checked",
                ))
            }
            (Some(c), Some(sh)) => Some(Cluster::start(
                c.clone(),
                sh.bucket.clone(),
                background.spawner(),
                config.clock.clone(),
            )?),
        };
        // Without the journal, nothing else would make catalog writes
        // durable.
        let (catalog, unbuilt) = Catalog::open(
            &config.data_dir,
            !config.journal.enabled,
            config.tuning.sqlite_vfs.as_deref(),
        )?;
        let catalog = Arc::new(catalog);
        let locks = ObjectLocks::open(&config.data_dir)?;
        // The journal opens even when disabled: after a power cut, what
        // an earlier process acknowledged from it must be put back into
        // the objects' WALs before anyone can open them.
        let (journal, earlier_boot) = Journal::open(
            &config.data_dir,
            config.data_dir.join(OBJECTS_DIR),
            config.journal.clone(),
            catalog.clone(),
        )?;
        for file in earlier_boot {
            replay::replay_file(&journal, &config, &catalog, &locks, file)?;
        }
        if unbuilt {
            listing::build_catalog(
                &config.data_dir.join(OBJECTS_DIR),
                &catalog,
                &locks,
                config.clock.now_ms(),
            )?;
        }
        let journal = config.journal.enabled.then_some(journal);
        let shared = Arc::new(Shared::new(
            config, background, journal, shipper, cluster, catalog, locks,
        ));
        delete::finish_deletes(&shared)?;
        Ok(Store { shared, key })
    }

    /// How much the store journal shares its fsyncs; zeros when the
    /// journal is disabled.
    pub fn journal_stats(&self) -> JournalStats {
        self.shared
            .journal
            .as_ref()
            .map_or_else(JournalStats::default, Journal::stats)
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// This host's cluster membership, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.shared.cluster.as_ref()
    }

    /// The id an object name maps to in this store.
    pub fn id_from_name(&self, name: &str) -> Result<ObjectId> {
        ObjectId::from_name(&self.key, name)
    }

    /// Opens the object called `name`, creating its database on first use.
    /// At most one handle per object exists at a time: a second open, from
    /// this process or another, fails with `ErrorKind::Locked`.
    pub fn open_object(&self, name: &str) -> Result<Object> {
        let id = self.id_from_name(name)?;
        Object::open(self.shared.clone(), id, name)
    }

    /// Every object in the store, in name order. For a large store, page
    /// with `list_objects_page` instead.
    pub fn list_objects(&self) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut opts = ObjectListOptions::default();
        loop {
            let page = self.list_objects_page(&opts)?;
            let Some(last) = page.last() else {
                return Ok(out);
            };
            opts.start_after = last.name.clone();
            out.extend(page);
        }
    }

    /// One page of objects, in name order (bytewise UTF-8): those whose
    /// names start with `prefix` and sort after `start_after`, at most
    /// `limit`. The next page starts after the last name returned.
    pub fn list_objects_page(&self, opts: &ObjectListOptions) -> Result<Vec<ObjectInfo>> {
        if opts.limit == 0 {
            return Err(Error::invalid("limit must be at least 1"));
        }
        let page = self
            .shared
            .catalog
            .page(&opts.prefix, &opts.start_after, opts.limit)?;
        Ok(page
            .into_iter()
            .map(|(id, name)| ObjectInfo { id, name })
            .collect())
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// How many objects the store holds.
    pub fn count_objects(&self) -> Result<u64> {
        self.shared.catalog.count()
    }
}

/// Which objects `Store::list_objects_page` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectListOptions {
    /// Only names that start with this.
    pub prefix: String,
    /// Only names that sort after this (exclusive): the last name of the
    /// previous page.
    pub start_after: String,
    /// At most this many (at least 1).
    pub limit: usize,
}

impl Default for ObjectListOptions {
    fn default() -> Self {
        ObjectListOptions {
            prefix: String::new(),
            start_after: String::new(),
            limit: DEFAULT_PAGE,
        }
    }
}

impl ObjectListOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub fn start_after(mut self, name: impl Into<String>) -> Self {
        self.start_after = name.into();
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

/// The page size of `ObjectListOptions::default()`.
pub const DEFAULT_PAGE: usize = 1000;
