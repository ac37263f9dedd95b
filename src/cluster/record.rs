//! The records cluster mode keeps in the bucket, as small JSON bodies: an
//! object's ownership record, a host's lease, and an incarnation's fence.

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// `<prefix>/owners/<id>`: which host incarnation owns the object, and in
/// which epoch. Changed only by conditional PUTs (create, or update with
/// the etag last read), so two hosts never both believe a change of theirs
/// succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// `<prefix>/fences/<incarnation>`: the incarnation lost an object to a
/// takeover, so it must acknowledge nothing more. Created (create-only) by
/// the taker before it changes any ownership record naming the
/// incarnation; the incarnation reads it once after each PUT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// The incarnation fenced.
    pub host: String,
    /// The incarnation that took an object from it (informational).
    pub by: String,
    /// Wall time of the fencing, ms since the Unix epoch (informational).
    pub at_ms: u64,
}

fn bad(what: &str, e: serde_json::Error) -> Error {
    Error::context(
        ErrorKind::Corruption,
        format_args!("{what} is malformed"),
        e,
    )
}

impl OwnerRecord {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record of strings and integers serializes")
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<OwnerRecord> {
        serde_json::from_slice(bytes).map_err(|e| bad("an ownership record", e))
    }
}

impl LeaseRecord {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record of strings and integers serializes")
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<LeaseRecord> {
        serde_json::from_slice(bytes).map_err(|e| bad("a host lease", e))
    }
}

impl FenceRecord {
    pub(crate) fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record of strings and integers serializes")
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<FenceRecord> {
        serde_json::from_slice(bytes).map_err(|e| bad("a fence record", e))
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
        let f = FenceRecord {
            host: "h1-0011aabb".into(),
            by: "h2-22334455".into(),
            at_ms: 5,
        };
        assert_eq!(FenceRecord::from_json(&f.to_json()).unwrap(), f);
        assert!(l.live_at(1499));
        assert!(!l.live_at(1500));
        // The bytes earlier versions wrote still parse.
        let old = br#"{"addr":"a:1","claim":"c","epoch":3,"host":"h","since_ms":9}"#;
        assert_eq!(OwnerRecord::from_json(old).unwrap().epoch, 3);
    }

    #[test]
    fn malformed_records_are_corruption() {
        for body in [&b"{"[..], b"{}", b"{\"host\":1}", b"\xff"] {
            let e = OwnerRecord::from_json(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption);
            let e = LeaseRecord::from_json(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption);
            let e = FenceRecord::from_json(body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption);
        }
    }
}
