//! The store: a data directory holding one SQLite database per object, the
//! secret key that maps names to ids, and the shared syncer.
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

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::{BucketConfig, Config, DurabilityLevel};
use crate::durability::Syncer;
use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::id::ObjectId;
use crate::object::Object;
use crate::pitr::ship::Shipper;
use crate::pitr::Bucket;

const KEY_FILE: &str = "store.key";
const OBJECTS_DIR: &str = "objects";

/// A handle to a store. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    /// Cluster mode; declared first so that it leaves (deleting the
    /// lease) before the shipper's runtime goes away.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    pub(crate) config: Config,
    key: [u8; 32],
    open: Mutex<HashSet<ObjectId>>,
    pub(crate) syncer: Syncer,
    pub(crate) shipper: Option<Arc<Shipper>>,
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
        let shipper = match bucket {
            Some(b) => Some(Arc::new(Shipper::new(
                b,
                config.pitr.clone(),
                config.clock.clone(),
            )?)),
            None => None,
        };
        let key = match &shipper {
            Some(sh) => shared_key(&config.data_dir, sh)?,
            None => load_or_create_key(&config.data_dir)?,
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
            (Some(c), Some(sh)) => Some(crate::cluster::Cluster::start(
                c.clone(),
                sh.clone(),
                config.clock.clone(),
            )?),
        };
        let syncer = Syncer::start(config.sync_threads);
        Ok(Store {
            inner: Arc::new(StoreInner {
                cluster,
                config,
                key,
                open: Mutex::new(HashSet::new()),
                syncer,
                shipper,
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<StoreInner> {
        &self.inner
    }

    pub(crate) fn from_inner(inner: Arc<StoreInner>) -> Store {
        Store { inner }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// This host's cluster membership, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.inner.cluster.as_ref()
    }

    /// The id an object name maps to in this store.
    pub fn id_from_name(&self, name: &str) -> Result<ObjectId> {
        ObjectId::from_name(&self.inner.key, name)
    }

    /// Opens the object called `name`, creating its database on first use.
    /// At most one handle per object exists at a time: a second open, from
    /// this process or another, fails with `ErrorKind::Locked`.
    pub fn open_object(&self, name: &str) -> Result<Object> {
        let id = self.id_from_name(name)?;
        {
            let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
            if !open.insert(id) {
                return Err(Error::new(
                    ErrorKind::Locked,
                    format!("object `{name}` is already open in this process"),
                ));
            }
        }
        let guard = OpenGuard {
            store: self.inner.clone(),
            id,
        };
        Object::open(self.inner.clone(), guard, id, name)
    }

    /// Every object in the store, sorted by id.
    pub fn list_objects(&self) -> Result<Vec<ObjectInfo>> {
        let root = self.inner.config.data_dir.join(OBJECTS_DIR);
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

impl StoreInner {
    pub(crate) fn object_dir(&self, id: &ObjectId) -> PathBuf {
        let hex = id.to_hex();
        self.config
            .data_dir
            .join(OBJECTS_DIR)
            .join(&hex[..2])
            .join(hex)
    }
}

/// Releases the in-process claim on an object when its handle goes away.
pub(crate) struct OpenGuard {
    store: Arc<StoreInner>,
    id: ObjectId,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut open = self.store.open.lock().unwrap_or_else(|p| p.into_inner());
        open.remove(&self.id);
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

/// The store key, agreed between the data directory and the bucket. The
/// bucket keeps a copy so that a store rebuilt from the bucket alone (the
/// local disk lost) maps names to the same ids.
fn shared_key(dir: &Path, sh: &Arc<Shipper>) -> Result<[u8; 32]> {
    use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
    let local_path = dir.join(KEY_FILE);
    let local = match fs::read(&local_path) {
        Ok(b) => Some(<[u8; 32]>::try_from(b).map_err(|_| {
            Error::new(
                ErrorKind::Corruption,
                format!("{} must hold exactly 32 bytes", local_path.display()),
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("read {}", local_path.display()), e)),
    };
    let bucket = sh.bucket.clone();
    let key_path = bucket.layout().store_key();
    let fresh = match local {
        Some(k) => k,
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("no randomness for the store key: {e}"),
                )
            })?;
            k
        }
    };
    let remote: [u8; 32] = sh.block_on(async move {
        let store = bucket.store();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&key_path, PutPayload::from(fresh.to_vec()), opts)
            .await
        {
            Ok(_) => Ok(fresh),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let got = store
                    .get(&key_path)
                    .await
                    .map_err(|e| crate::pitr::bucket::store_error("reading the store key", e))?
                    .bytes()
                    .await
                    .map_err(|e| crate::pitr::bucket::store_error("reading the store key", e))?;
                <[u8; 32]>::try_from(&got[..]).map_err(|_| {
                    Error::new(ErrorKind::Corruption, "the bucket's store.key is damaged")
                })
            }
            Err(e) => Err(crate::pitr::bucket::store_error("writing the store key", e)),
        }
    })?;
    match local {
        Some(k) if k != remote => Err(Error::invalid(
            "the bucket belongs to another store (its store.key differs from this data \
             directory's); use another bucket or prefix",
        )),
        Some(k) => Ok(k),
        None => {
            fsutil::write_atomic(&local_path, &remote)?;
            Ok(remote)
        }
    }
}

fn load_or_create_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            Error::new(
                ErrorKind::Corruption,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("no randomness for the store key: {e}"),
                )
            })?;
            fsutil::write_atomic(&path, &key)?;
            // Two processes may race to create the key; the rename makes
            // one file win, so read back whichever did.
            let bytes =
                fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            bytes.try_into().map_err(|_| {
                Error::new(
                    ErrorKind::Corruption,
                    format!("{} is damaged", path.display()),
                )
            })
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}
