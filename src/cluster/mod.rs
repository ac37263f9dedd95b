//! Cluster mode: several hosts share one bucket, and each object is served
//! by exactly one of them at a time (docs/scale-out.md).
//!
//! - `record.rs`: the ownership record and the host lease, as stored.
//! - `lease.rs`: this host's lease: registration, renewal, self-fencing.
//! - `claim.rs`: taking an object (conditional PUTs, new epoch, restore
//!   source) and the acknowledgement check (`Fence::confirm`).
//!
//! The bucket is the only shared component. Safety rests on conditional
//! writes and epochs; leases only decide when a host may be presumed dead.

mod claim;
mod config;
mod lease;
pub mod record;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::ObjectStoreExt;

use crate::background::Spawner;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::pitr::bucket::store_error;
use crate::pitr::Bucket;

pub(crate) use claim::{Activation, Fence};
pub use config::ClusterConfig;
pub use record::{FenceRecord, LeaseRecord, OwnerRecord};

/// This host's membership of a cluster. One per `Store` in cluster mode.
pub struct Cluster {
    cfg: ClusterConfig,
    bucket: Bucket,
    spawner: Spawner,
    clock: Arc<dyn Clock>,
    state: Mutex<HostState>,
    /// Mirrors of `HostState::generation` and of the lease's end (0: not
    /// held), for the lock-free check every object call makes.
    generation: AtomicU64,
    held_until_ms: AtomicU64,
}

struct HostState {
    /// `<host>-<8 hex>`, new for every start and every self-fencing.
    incarnation: String,
    /// Bumped when the host fences itself; objects opened under an older
    /// generation stop acknowledging.
    generation: u64,
    /// Clock time at which the last successful renewal was sent; the lease
    /// is held until `last_ok_ms + ttl`.
    last_ok_ms: Option<u64>,
    /// Objects this incarnation claimed, with the epoch it claimed.
    owned: HashMap<ObjectId, u64>,
    /// Objects last seen owned by another live host: (address, until ms).
    /// Saves the two reads per forwarded request; dropped when forwarding
    /// to the address fails.
    routes: HashMap<ObjectId, (String, u64)>,
    stopped: bool,
    /// Tests: renewals are skipped while set (a host that cannot reach the
    /// bucket, or is paused).
    renewals_paused: bool,
}

impl Cluster {
    /// Joins: probes the bucket's conditional writes (refusing a store that
    /// ignores them), registers a lease, and starts renewing it.
    pub(crate) fn start(
        cfg: ClusterConfig,
        bucket: Bucket,
        spawner: Spawner,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Cluster>> {
        check_host_name(&cfg.host)?;
        if cfg.lease_ttl < std::time::Duration::from_millis(200) {
            return Err(Error::invalid("the lease TTL must be at least 200 ms"));
        }
        check_advertise(&cfg.advertise)?;
        let b2 = bucket.clone();
        let nonce = clock.now_ms() ^ u64::from(std::process::id()) << 40;
        let diag =
            spawner.block_on(async move { crate::pitr::diagnose::diagnose(&b2, nonce).await });
        if !diag.supports_everything() {
            let bad: Vec<String> = diag
                .probes
                .iter()
                .filter(|p| !p.ok)
                .map(|p| format!("{}: {}", p.name, p.detail))
                .collect();
            return Err(Error::invalid(format!(
                "the bucket cannot fence writers, so cluster mode refuses it ({}); \
                 `amber diagnose` shows the probes",
                bad.join("; ")
            )));
        }
        // Two hosts advertising one address would forward to each other
        // and delete each other's leases: refuse to join as the second.
        let b3 = bucket.clone();
        let (addr, name) = (cfg.advertise.clone(), cfg.host.clone());
        let now = clock.now_ms();
        let clash = spawner.block_on(async move {
            let list = b3.list_dir(&b3.layout().hosts()).await?;
            for m in list.objects {
                if let Some(l) = read_lease_at(&b3, &m.location).await? {
                    if l.addr == addr && l.live_at(now) && !lease::same_host_name(&l.host, &name) {
                        return Ok::<_, Error>(Some(l.host));
                    }
                }
            }
            Ok(None)
        })?;
        if let Some(other) = clash {
            return Err(Error::invalid(format!(
                "host {other} already advertises {}: give each host its own --advertise address",
                cfg.advertise
            )));
        }
        let c = Arc::new(Cluster {
            state: Mutex::new(HostState {
                incarnation: new_incarnation(&cfg.host)?,
                generation: 1,
                last_ok_ms: None,
                owned: HashMap::new(),
                routes: HashMap::new(),
                stopped: false,
                renewals_paused: false,
            }),
            cfg,
            bucket,
            spawner,
            clock,
            generation: AtomicU64::new(1),
            held_until_ms: AtomicU64::new(0),
        });
        let c2 = c.clone();
        c.spawner.block_on(async move { c2.renew().await })?;
        lease::spawn_renewer(&c);
        lease::spawn_sweep(&c);
        Ok(c)
    }

    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This host's current incarnation id.
    pub fn incarnation(&self) -> String {
        self.lock().incarnation.clone()
    }

    /// The address other hosts forward to.
    pub fn advertise(&self) -> &str {
        &self.cfg.advertise
    }

    pub fn lease_ttl(&self) -> std::time::Duration {
        self.cfg.lease_ttl
    }

    /// Whether this host holds its lease now.
    pub fn lease_valid(&self) -> bool {
        let st = self.lock();
        self.valid(&st)
    }

    fn valid(&self, st: &HostState) -> bool {
        let ttl = self.cfg.lease_ttl.as_millis() as u64;
        !st.stopped
            && st
                .last_ok_ms
                .is_some_and(|t| self.clock.now_ms() < t.saturating_add(ttl))
    }

    /// Bumped each time this host fences itself.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Lock-free: the lease is held, in generation `generation`.
    pub(crate) fn holds(&self, generation: u64) -> bool {
        self.generation.load(Ordering::Acquire) == generation
            && self.clock.now_ms() < self.held_until_ms.load(Ordering::Acquire)
    }

    /// Publishes `st`'s generation and lease end to the atomic mirrors.
    /// Called with the state lock held, after every change.
    fn publish(&self, st: &HostState) {
        let ttl = self.cfg.lease_ttl.as_millis() as u64;
        let until = match (st.stopped, st.last_ok_ms) {
            (false, Some(t)) => t.saturating_add(ttl),
            _ => 0,
        };
        self.generation.store(st.generation, Ordering::Release);
        self.held_until_ms.store(until, Ordering::Release);
    }

    /// Every host with a lease record in the bucket, live or not.
    pub fn hosts(&self) -> Result<Vec<LeaseRecord>> {
        let bucket = self.bucket.clone();
        self.spawner.block_on(async move {
            let list = bucket.list_dir(&bucket.layout().hosts()).await?;
            let mut out = Vec::new();
            for m in list.objects {
                match read_lease_at(&bucket, &m.location).await? {
                    Some(l) => out.push(l),
                    None => continue,
                }
            }
            out.sort_by(|a, b| a.host.cmp(&b.host));
            Ok(out)
        })
    }

    /// The ownership record of `id`, if it has one.
    pub fn owner_of(&self, id: ObjectId) -> Result<Option<OwnerRecord>> {
        let bucket = self.bucket.clone();
        self.spawner
            .block_on(async move { Ok(claim::read_owner(&bucket, &id).await?.map(|(r, _)| r)) })
    }

    /// The fence record of incarnation `inc`, if another host fenced it.
    pub fn fence_of(&self, inc: &str) -> Result<Option<FenceRecord>> {
        let key = self.bucket.layout().fence(inc);
        let bucket = self.bucket.clone();
        self.spawner.block_on(async move {
            match get_record(&bucket, &key, "reading a fence record").await? {
                Some((b, _)) => Ok(Some(FenceRecord::from_json(&b)?)),
                None => Ok(None),
            }
        })
    }

    /// Forgets cached routes to `addr` (forwarding to it failed).
    pub fn unreachable(&self, addr: &str) {
        self.lock().routes.retain(|_, (a, _)| a != addr);
    }

    /// For tests: stop (or resume) renewing the lease, as a host cut off
    /// from the bucket would. The host fences itself a TTL later.
    #[doc(hidden)]
    pub fn set_renewals_paused(&self, paused: bool) {
        self.lock().renewals_paused = paused;
    }

    /// Leaves the cluster: stops renewing and deletes this host's lease,
    /// so other hosts may take its objects at once. Call after every
    /// object is closed (their writes are then in the bucket).
    pub fn leave(&self) -> Result<()> {
        let inc = {
            let mut st = self.lock();
            if st.stopped {
                return Ok(());
            }
            st.stopped = true;
            st.owned.clear();
            self.publish(&st);
            st.incarnation.clone()
        };
        let bucket = self.bucket.clone();
        self.spawner.block_on(async move {
            match bucket.store().delete(&bucket.layout().host(&inc)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(store_error("deleting this host's lease", e)),
            }
        })
    }

    pub(crate) fn fenced_error(&self, what: &str) -> Error {
        Error::new(
            ErrorKind::Fenced,
            format!(
                "{what}: this host's lease lapsed or the object was taken over; \
                 nothing after that was acknowledged"
            ),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Best effort: a host that exits without leaving is taken over
        // once its lease runs out. Inside an async runtime a blocking wait
        // could deadlock; the lease then simply expires.
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = self.leave();
        }
    }
}

/// GETs one of cluster mode's small records (`what` names it in errors):
/// its bytes and metadata, or `None` if it does not exist.
async fn get_record(
    bucket: &Bucket,
    key: &object_store::path::Path,
    what: &str,
) -> Result<Option<(bytes::Bytes, object_store::ObjectMeta)>> {
    match bucket.store().get(key).await {
        Ok(r) => {
            let meta = r.meta.clone();
            let bytes = r.bytes().await.map_err(|e| store_error(what, e))?;
            Ok(Some((bytes, meta)))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(what, e)),
    }
}

async fn read_lease_at(
    bucket: &Bucket,
    key: &object_store::path::Path,
) -> Result<Option<LeaseRecord>> {
    let got = get_record(bucket, key, "reading a lease").await?;
    Ok(got.and_then(|(b, _)| LeaseRecord::from_json(&b).ok()))
}

/// `host:port`, with a port, and not an unspecified address (0.0.0.0 or
/// `::`), which no other host could reach.
fn check_advertise(a: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(format!(
            "advertise address {a:?} {why}: other hosts forward requests to it"
        )))
    };
    let Some((host, port)) = a.rsplit_once(':') else {
        return bad("needs a port");
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad("needs a host and a non-zero port");
    }
    if let Ok(sa) = a.parse::<std::net::SocketAddr>() {
        if sa.ip().is_unspecified() {
            return bad("is unspecified (listen on it, but advertise a reachable address)");
        }
    }
    Ok(())
}

fn check_host_name(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "host name {h:?} must be 1 to 64 letters, digits, `.`, `_` or `-`"
        )))
    }
}

fn new_incarnation(host: &str) -> Result<String> {
    Ok(format!("{host}-{:08x}", random_u64()? as u32))
}

pub(crate) fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)
        .map_err(|e| Error::new(ErrorKind::Io, format!("no randomness: {e}")))?;
    Ok(u64::from_le_bytes(b))
}
