//! How a host joins a cluster.

use std::time::Duration;

/// Cluster mode: ownership records and host leases in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// A name for this host (letters, digits, `.`, `_`, `-`; at most 64
    /// bytes). Each start adds a random suffix: the incarnation id.
    pub host: String,
    /// Where other hosts reach this one (`host:port`), for forwarding.
    pub advertise: String,
    /// How long a lease lives without renewal. A host that cannot renew
    /// within it stops acknowledging; others may take its objects after it.
    pub lease_ttl: Duration,
}

impl ClusterConfig {
    pub fn new(host: impl Into<String>, advertise: impl Into<String>) -> Self {
        ClusterConfig {
            host: host.into(),
            advertise: advertise.into(),
            lease_ttl: Duration::from_secs(10),
        }
    }
}
