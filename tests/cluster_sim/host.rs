//! A host: one `Store` in cluster mode on its own clock and data
//! directory, and its handle on the object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::pitr::Bucket;
use amber::{BucketConfig, ClusterConfig, Config, DurabilityLevel, ManualClock, Object, Store};

use crate::model::{T0, TTL_MS};

pub struct Handle {
    pub obj: Object,
    /// `Sim::era` right after this handle's open: any later open (by the
    /// other host) makes it stale.
    pub era: u64,
    pub epoch: u64,
}

pub struct Host {
    pub name: &'static str,
    /// `None` only while the host restarts.
    pub store: Option<Store>,
    pub clock: Arc<ManualClock>,
    pub handle: Option<Handle>,
    pub paused: bool,
    pub bucket: Bucket,
    pub retention: Duration,
    /// Ships through the store's shared log (else round 1's per-object
    /// segments); the fence rule is the same for both.
    pub shared_log: bool,
    pub dir: tempfile::TempDir,
}

impl Host {
    pub fn cluster(&self) -> &Arc<amber::cluster::Cluster> {
        self.store().cluster().expect("cluster mode")
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("the host is up")
    }
}

pub fn open_host(name: &'static str, bucket: &Bucket) -> Host {
    open_host_with(name, bucket, amber::PitrConfig::default().retention)
}

pub fn open_host_with(name: &'static str, bucket: &Bucket, retention: Duration) -> Host {
    open_host_layout(name, bucket, retention, true)
}

pub fn open_host_layout(
    name: &'static str,
    bucket: &Bucket,
    retention: Duration,
    shared_log: bool,
) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let store = start_store(name, bucket, dir.path(), &clock, retention, shared_log)
        .unwrap_or_else(|e| panic!("open store {name}: {e}"));
    Host {
        name,
        store: Some(store),
        clock,
        handle: None,
        paused: false,
        bucket: bucket.clone(),
        retention,
        shared_log,
        dir,
    }
}

pub fn start_store(
    name: &'static str,
    bucket: &Bucket,
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    retention: Duration,
    shared_log: bool,
) -> amber::Result<Store> {
    let mut cc = ClusterConfig::new(name, format!("{name}.sim:1"));
    cc.lease_ttl = Duration::from_millis(TTL_MS);
    let mut cfg = Config::new(dir)
        .with_bucket(BucketConfig::Bucket(bucket.clone()))
        .with_durability(DurabilityLevel::Remote)
        .with_clock(clock.clone())
        .with_cluster(cc);
    cfg.pitr.upload_attempts = 3;
    cfg.pitr.retry_base = Duration::from_millis(2);
    cfg.pitr.snapshot_min_interval = Duration::ZERO;
    cfg.pitr.retention = retention;
    cfg.pitr.shared_log = shared_log;
    cfg.sync_threads = 1;
    Store::open(cfg)
}

/// Waits until `h`'s lease is valid (its renewer rejoined after a lapse).
pub fn wait_lease(h: &Host) {
    let c = h.cluster();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.lease_valid() {
        assert!(
            Instant::now() < deadline,
            "{}'s lease never renewed",
            h.name
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
