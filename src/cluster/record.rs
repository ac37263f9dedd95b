//! The two records cluster mode keeps in the bucket, as small JSON bodies:
//! an object's ownership record and a host's lease.

use crate::error::{Error, ErrorKind, Result};

/// `<prefix>/owners/<id>`: which host incarnation owns the object, and in
/// which epoch. Changed only by conditional PUTs (create, or update with
/// the etag last read), so two hosts never both believe a change of theirs
/// succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRecord {
    /// Incarnation id of the owning host.
    pub host: String,
    /// Where the owner takes forwarded requests.
    pub addr: String,
    /// The epoch the owner writes; every segment and snapshot key has it.
    pub epoch: u64,
    /// Random id of the claim that wrote this record: a claimer whose PUT
    /// timed out and then met a failed precondition reads the record back
    /// and knows by this id whether the first attempt won.
    pub claim: String,
    /// Wall time of the claim, ms since the Unix epoch (informational).
    pub since_ms: u64,
}

/// `<prefix>/hosts/<incarnation>`: a host's lease, rewritten every
/// quarter TTL. Others treat the host as gone once `renewed_ms + ttl_ms`
/// has passed on their clock (liveness only; safety does not need it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub host: String,
    pub addr: String,
    pub renewed_ms: u64,
    pub ttl_ms: u64,
}

impl LeaseRecord {
    /// Whether the lease is still live at `now_ms`.
    pub fn live_at(&self, now_ms: u64) -> bool {
        now_ms < self.renewed_ms.saturating_add(self.ttl_ms)
    }
}

fn bad(what: &str) -> Error {
    Error::new(ErrorKind::Corruption, format!("{what} is malformed"))
}

fn field_str(v: &serde_json::Value, k: &str, what: &str) -> Result<String> {
    v.get(k)
        .and_then(|x| x.as_str())
        .map(str::to_owned)
        .ok_or_else(|| bad(what))
}

fn field_u64(v: &serde_json::Value, k: &str, what: &str) -> Result<u64> {
    v.get(k).and_then(|x| x.as_u64()).ok_or_else(|| bad(what))
}

impl OwnerRecord {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "host": self.host,
            "addr": self.addr,
            "epoch": self.epoch,
            "claim": self.claim,
            "since_ms": self.since_ms,
        })
        .to_string()
        .into_bytes()
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<OwnerRecord> {
        const W: &str = "an ownership record";
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| bad(W))?;
        Ok(OwnerRecord {
            host: field_str(&v, "host", W)?,
            addr: field_str(&v, "addr", W)?,
            epoch: field_u64(&v, "epoch", W)?,
            claim: field_str(&v, "claim", W)?,
            since_ms: field_u64(&v, "since_ms", W)?,
        })
    }
}

impl LeaseRecord {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::json!({
            "host": self.host,
            "addr": self.addr,
            "renewed_ms": self.renewed_ms,
            "ttl_ms": self.ttl_ms,
        })
        .to_string()
        .into_bytes()
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<LeaseRecord> {
        const W: &str = "a host lease";
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|_| bad(W))?;
        Ok(LeaseRecord {
            host: field_str(&v, "host", W)?,
            addr: field_str(&v, "addr", W)?,
            renewed_ms: field_u64(&v, "renewed_ms", W)?,
            ttl_ms: field_u64(&v, "ttl_ms", W)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let o = OwnerRecord {
            host: "h1-0011aabb".into(),
            addr: "127.0.0.1:8080".into(),
            epoch: 7,
            claim: "c0ffee".into(),
            since_ms: 1_700_000_000_000,
        };
        assert_eq!(OwnerRecord::from_json(&o.to_json()).unwrap(), o);
        let l = LeaseRecord {
            host: "h1-0011aabb".into(),
            addr: "127.0.0.1:8080".into(),
            renewed_ms: 1000,
            ttl_ms: 500,
        };
        assert_eq!(LeaseRecord::from_json(&l.to_json()).unwrap(), l);
        assert!(l.live_at(1499));
        assert!(!l.live_at(1500));
    }

    #[test]
    fn malformed_records_are_corruption() {
        for body in [&b"{"[..], b"{}", b"{\"host\":1}", b"\xff"] {
            let e = OwnerRecord::from_json(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption);
            let e = LeaseRecord::from_json(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption);
        }
    }
}
