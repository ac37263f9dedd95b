//! How log shipping and retention are tuned.

use std::time::Duration;

/// Log shipping and retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PitrConfig {
    /// How long a shipper waits for more commits before a PUT. Zero ships
    /// as soon as the previous PUT is done; commits that arrive meanwhile
    /// join the next segment either way. With the shared log it is the
    /// least time between the starts of two store-segment PUTs, so under
    /// load a store makes at most one data PUT per window.
    pub flush_interval: Duration,
    /// A segment is cut once its pages reach this many bytes.
    pub max_segment_bytes: usize,
    /// PUTs in flight across all objects of the store.
    pub max_concurrent_uploads: usize,
    /// Attempts per PUT before the object is broken (its commits stay in
    /// the local WAL and are shipped on reopen).
    pub upload_attempts: u32,
    /// First retry delay; doubles per attempt, capped at 5 s.
    pub retry_base: Duration,
    /// How far back a restore may go.
    pub retention: Duration,
    /// Least time between two snapshots of an object.
    pub snapshot_min_interval: Duration,
    /// Ship all objects of the store through one shared log: one store
    /// segment per PUT for every object with pending commits. Off, each
    /// object ships its own segments (round 1's layout). Cluster mode
    /// shares too (its fence is read once per incarnation per PUT).
    pub shared_log: bool,
    /// Shared log: least time between two indexes of a busy object (and
    /// so at most one small PUT per object per interval). A closing object
    /// writes its last index at once.
    pub index_interval: Duration,
}

impl Default for PitrConfig {
    fn default() -> Self {
        PitrConfig {
            flush_interval: Duration::ZERO,
            max_segment_bytes: 16 << 20,
            max_concurrent_uploads: 16,
            upload_attempts: 8,
            retry_base: Duration::from_millis(50),
            retention: Duration::from_secs(30 * 24 * 3600),
            snapshot_min_interval: Duration::from_secs(60),
            shared_log: true,
            index_interval: Duration::from_secs(60),
        }
    }
}

impl PitrConfig {
    pub fn with_flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }

    pub fn with_max_segment_bytes(mut self, bytes: usize) -> Self {
        self.max_segment_bytes = bytes;
        self
    }

    pub fn with_max_concurrent_uploads(mut self, n: usize) -> Self {
        self.max_concurrent_uploads = n;
        self
    }

    /// Attempts per PUT, and the first retry delay (doubling, capped at 5 s).
    pub fn with_retries(mut self, attempts: u32, base: Duration) -> Self {
        self.upload_attempts = attempts;
        self.retry_base = base;
        self
    }

    pub fn with_retention(mut self, d: Duration) -> Self {
        self.retention = d;
        self
    }

    pub fn with_snapshot_min_interval(mut self, d: Duration) -> Self {
        self.snapshot_min_interval = d;
        self
    }

    pub fn with_shared_log(mut self, on: bool) -> Self {
        self.shared_log = on;
        self
    }

    pub fn with_index_interval(mut self, d: Duration) -> Self {
        self.index_interval = d;
        self
    }
}
