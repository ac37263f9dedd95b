//! Store configuration. Every limit from the Durable Objects model is here
//! with DO's figure as the default.

use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::sqlite::DEFAULT_PRAGMAS;

pub use crate::cluster::ClusterConfig;
pub use crate::journal::JournalOptions;
pub use crate::ship::PitrConfig;

/// When a commit's ticket resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DurabilityLevel {
    /// The commit's WAL frames are fsync'd on local disk.
    #[default]
    Local,
    /// The commit, and every commit before it, is in the bucket.
    Remote,
}

/// Where committed transactions are shipped for point-in-time recovery.
#[derive(Clone, Default)]
pub enum BucketConfig {
    /// No log shipping: no PITR, and `DurabilityLevel::Remote` is refused.
    Disabled,
    /// The embedded default: `file://<data_dir>/bucket`.
    #[default]
    Default,
    /// A bucket URL: `file:///path`, `memory://`, `s3://bucket/prefix?...`.
    Url(String),
    /// A bucket built by the caller (to share a `memory://` store between
    /// stores, or to wrap one in a decorator).
    Bucket(crate::pitr::Bucket),
}

impl std::fmt::Debug for BucketConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BucketConfig::Disabled => f.write_str("Disabled"),
            BucketConfig::Default => f.write_str("Default"),
            BucketConfig::Url(u) => match crate::pitr::BucketUrl::parse(u) {
                Ok(p) => write!(f, "Url({p})"),
                Err(_) => f.write_str("Url(<invalid>)"),
            },
            BucketConfig::Bucket(b) => write!(f, "{b:?}"),
        }
    }
}

/// Size limits, enforced per object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest KV key, in bytes of UTF-8 (DO: 2 KiB).
    pub max_key_bytes: usize,
    /// Largest KV value, in bytes (DO: 128 KiB).
    pub max_value_bytes: usize,
    /// Longest SQL string, in bytes (DO: 100 KB).
    pub max_sql_length: usize,
    /// Most columns in a table or result (DO: 100). Values below 8 act as 8,
    /// which amber's own tables need.
    pub max_columns: usize,
    /// Most bound parameters per statement (DO: 100).
    pub max_params: usize,
    /// Largest string, blob or row, in bytes (DO: 2 MB).
    pub max_row_bytes: usize,
    /// Longest LIKE or GLOB pattern, in bytes (DO: 50).
    pub max_like_pattern: usize,
    /// Largest database, in bytes (DO: 10 GB).
    pub max_object_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 2048,
            max_value_bytes: 128 * 1024,
            max_sql_length: 100_000,
            max_columns: 100,
            max_params: 100,
            max_row_bytes: 2_000_000,
            max_like_pattern: 50,
            max_object_bytes: 10_000_000_000,
        }
    }
}

/// How an object's database is tuned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tuning {
    /// SQLite page cache per open object, in KiB.
    pub page_cache_kib: u32,
    /// Bytes of clean KV entries cached per open object.
    pub kv_cache_bytes: usize,
    /// WAL length, in pages, after which a turn's end checkpoints.
    pub checkpoint_pages: u32,
    /// `auto_vacuum` mode for new objects: incremental (default) or full.
    pub auto_vacuum_full: bool,
    /// Free pages after which a commit runs an incremental vacuum.
    pub vacuum_free_pages: u32,
    /// The registered SQLite VFS that objects' databases and the store
    /// catalog are opened with (`None`: SQLite's default). For tests:
    /// `amber::testing::FaultVfs`.
    pub sqlite_vfs: Option<String>,
    /// Keep the WAL when an object closes cleanly. Off (the default), a
    /// close after which nothing needs the WAL checkpoints it and deletes
    /// it: one file of a few pages at rest and a faster reopen, for three
    /// fsyncs at close (the WAL, the database, and the WAL's directory
    /// entry). On suits objects evicted and reopened far more often than
    /// they rest (docs/benchmarks.md, "Density").
    pub keep_wal_on_close: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            page_cache_kib: 1024,
            kv_cache_bytes: 1 << 20,
            checkpoint_pages: 1000,
            auto_vacuum_full: false,
            vacuum_free_pages: 64,
            sqlite_vfs: None,
            keep_wal_on_close: false,
        }
    }
}

/// Everything a `Store` needs. `Config::new(dir)` gives the embedded
/// default: local files, local durability, DO's limits.
#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub durability: DurabilityLevel,
    pub bucket: BucketConfig,
    pub pitr: PitrConfig,
    pub limits: Limits,
    pub tuning: Tuning,
    /// The store journal, which makes every object's commits durable with
    /// shared fsyncs.
    pub journal: JournalOptions,
    /// With the journal disabled only: threads that fsync objects' WAL
    /// files, several at once so that the file system can fold their
    /// flushes together.
    pub sync_threads: usize,
    /// Pragmas user SQL may run.
    pub allowed_pragmas: Vec<String>,
    pub clock: Arc<dyn Clock>,
    /// Several hosts sharing one bucket (see docs/scale-out.md). `None`:
    /// this store is the only writer of its bucket.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Config {
            data_dir: data_dir.into(),
            durability: DurabilityLevel::Local,
            bucket: BucketConfig::Default,
            pitr: PitrConfig::default(),
            limits: Limits::default(),
            tuning: Tuning::default(),
            journal: JournalOptions::default(),
            sync_threads: 4,
            allowed_pragmas: DEFAULT_PRAGMAS.iter().map(|s| s.to_string()).collect(),
            clock: Arc::new(SystemClock),
            cluster: None,
        }
    }

    pub fn with_cluster(mut self, cluster: ClusterConfig) -> Self {
        self.cluster = Some(cluster);
        self
    }

    pub fn with_bucket(mut self, bucket: BucketConfig) -> Self {
        self.bucket = bucket;
        self
    }

    pub fn with_durability(mut self, level: DurabilityLevel) -> Self {
        self.durability = level;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Self {
        self.tuning = tuning;
        self
    }

    pub fn with_journal(mut self, journal: JournalOptions) -> Self {
        self.journal = journal;
        self
    }

    pub fn with_sync_threads(mut self, threads: usize) -> Self {
        self.sync_threads = threads;
        self
    }

    pub fn with_pitr(mut self, pitr: PitrConfig) -> Self {
        self.pitr = pitr;
        self
    }

    /// Pragmas user SQL may run, replacing the default list
    /// (`amber::sqlite::DEFAULT_PRAGMAS`).
    pub fn with_allowed_pragmas<S: Into<String>>(
        mut self,
        pragmas: impl IntoIterator<Item = S>,
    ) -> Self {
        self.allowed_pragmas = pragmas.into_iter().map(Into::into).collect();
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new("./amber-data")
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("durability", &self.durability)
            .field("bucket", &self.bucket)
            .field("pitr", &self.pitr)
            .field("limits", &self.limits)
            .field("tuning", &self.tuning)
            .field("journal", &self.journal)
            .field("sync_threads", &self.sync_threads)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}
