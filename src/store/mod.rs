//! The store: a data directory holding one SQLite database per object, the
//! secret key that maps names to ids, and what its objects share.
//!
//! Layout under the data directory:
//!
//! ```text
//! store.key                   32 random bytes: the key of the name hash
//! objects/<id[0..2]>/<id>/    one directory per object
//!     db, db-wal              the object's SQLite database and its WAL
//!     name                    the object's name, UTF-8
//!     lock                    held with flock while the object is open
//! ```
//!
//! - `key.rs`: the store key, kept in step with the bucket's copy.
//! - `pitr.rs`: point-in-time recovery by object name.

mod key;
mod pitr;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::background::Background;
use crate::cluster::Cluster;
use crate::config::{BucketConfig, Config, DurabilityLevel};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::journal::{Journal, JournalStats};
use crate::object::{replay, Object, Shared, OBJECTS_DIR};
use crate::pitr::Bucket;
use crate::ship::Shipper;

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
        let shipper = bucket.map(|b| {
            Arc::new(Shipper::new(
                background.spawner(),
                b,
                config.pitr.clone(),
                config.clock.clone(),
            ))
        });
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
        // The journal opens even when disabled: after a power cut, what
        // an earlier process acknowledged from it must be put back into
        // the objects' WALs before anyone can open them.
        let (journal, earlier_boot) = Journal::open(
            &config.data_dir,
            config.data_dir.join(OBJECTS_DIR),
            config.journal.clone(),
        )?;
        for file in earlier_boot {
            replay::replay_file(&journal, &config, file)?;
        }
        let journal = config.journal.enabled.then_some(journal);
        let shared = Arc::new(Shared::new(config, background, journal, shipper, cluster));
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

    /// Every object in the store, sorted by id.
    pub fn list_objects(&self) -> Result<Vec<ObjectInfo>> {
        let root = self.shared.config.data_dir.join(OBJECTS_DIR);
        let mut out = Vec::new();
        for shard in read_dir_sorted(&root)? {
            for dir in read_dir_sorted(&shard)? {
                let Some(hex) = dir.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let Ok(id) = ObjectId::from_hex(hex) else {
                    continue;
                };
                let name_path = dir.join("name");
                let mut name = String::new();
                match File::open(&name_path) {
                    Ok(mut f) => {
                        f.read_to_string(&mut name)
                            .map_err(|e| Error::io(format!("read {}", name_path.display()), e))?;
                    }
                    // Created but never committed: not an object yet.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("open {}", name_path.display()), e)),
                }
                out.push(ObjectInfo { id, name });
            }
        }
        out.sort_by_key(|o| o.id);
        Ok(out)
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}
