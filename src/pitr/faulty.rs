//! Object-store decorators for tests, simulations and fuzzing: a seeded
//! fault injector and a request counter (the same type with no faults).
//!
//! ```
//! use std::sync::Arc;
//! use amber::pitr::faulty::{Faults, FaultyStore};
//! use amber::pitr::{Bucket, KeyLayout};
//!
//! let inner = Arc::new(object_store::memory::InMemory::new());
//! let faulty = Arc::new(FaultyStore::new(inner, 42, Faults::chaos()));
//! let bucket = Bucket::from_store(faulty.clone(), KeyLayout::new("").unwrap());
//! // ... run a store on `bucket`, then look at faulty.counts() and
//! // faulty.injected(), or read `inner` directly as the ground truth.
//! # drop(bucket);
//! ```
//!
//! Every decision is drawn from a generator seeded with
//! `(seed, operation, key, n)`, where `n` counts earlier requests of that
//! operation on that key. A run therefore replays from its seed whatever
//! order the requests of different keys arrive in.
//!
//! The faults, each a rate in parts per thousand:
//!
//! | fault | what the caller sees | did the request take effect |
//! |---|---|---|
//! | `error` | a 503-style `Generic` error | no |
//! | `delay` | the answer, up to `max_delay` late | yes |
//! | `lost_response` | a timeout-style `Generic` error | **yes**: the write landed |
//! | `conflict` | `Precondition` (412) or a 409 `Generic` error | no |
//! | `duplicate` | the answer; the same PUT is sent again later | yes, twice |
//! | `reorder` | the answer, held back after the write landed | yes |

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

/// A SplitMix64 generator: tiny, fast, and good enough to pick faults.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < per_mille as u64
    }
}

/// Fault rates, in parts per thousand of requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Faults {
    /// The request fails and takes no effect.
    pub error: u32,
    /// The request is delayed by up to `max_delay`.
    pub delay: u32,
    pub max_delay: Duration,
    /// A PUT lands but its answer is an error.
    pub lost_response: u32,
    /// A PUT is refused with 412 Precondition Failed or 409 Conflict.
    pub conflict: u32,
    /// A PUT lands and is sent again a little later (a retried request
    /// that the network delivered twice).
    pub duplicate: u32,
    /// A PUT lands, and its answer is held back so completions of
    /// different keys arrive out of order.
    pub reorder: u32,
}

impl Faults {
    /// No faults: a counting-only decorator.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// A mix of everything, at rates a retrying client must survive.
    pub fn chaos() -> Faults {
        Faults {
            error: 80,
            delay: 150,
            max_delay: Duration::from_millis(3),
            lost_response: 80,
            conflict: 40,
            duplicate: 60,
            reorder: 100,
        }
    }
}

/// Requests that reached the decorator, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// GET and HEAD (`get_opts`, `get_ranges`).
    pub get: u64,
    /// PUT, including multipart uploads and copies.
    pub put: u64,
    /// LIST, with or without a delimiter.
    pub list: u64,
    /// DELETE, one per key.
    pub delete: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.get + self.put + self.list + self.delete
    }
}

/// Faults injected so far, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Injected {
    pub errors: u64,
    pub delays: u64,
    pub lost_responses: u64,
    pub conflicts: u64,
    pub duplicates: u64,
    pub reorders: u64,
}

impl Injected {
    pub fn total(&self) -> u64 {
        self.errors
            + self.delays
            + self.lost_responses
            + self.conflicts
            + self.duplicates
            + self.reorders
    }
}

#[derive(Default)]
struct Counters {
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: Arc<AtomicU64>,
    errors: AtomicU64,
    delays: AtomicU64,
    lost: AtomicU64,
    conflicts: AtomicU64,
    duplicates: AtomicU64,
    reorders: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Get = 1,
    Put = 2,
    List = 3,
}

/// The decorator. Wrap any store, hand it to `Bucket::from_store`.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    seed: u64,
    faults: Mutex<Faults>,
    outage: AtomicBool,
    draws: Mutex<HashMap<(Op, String), u64>>,
    n: Counters,
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner.to_string())
            .field("seed", &self.seed)
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore(seed {}, {})", self.seed, self.inner)
    }
}

const STORE: &str = "FaultyStore";

fn injected(what: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: format!("injected fault: {what}").into(),
    }
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, seed: u64, faults: Faults) -> FaultyStore {
        FaultyStore {
            inner,
            seed,
            faults: Mutex::new(faults),
            outage: AtomicBool::new(false),
            draws: Mutex::new(HashMap::new()),
            n: Counters::default(),
        }
    }

    /// A decorator that only counts requests.
    pub fn counting(inner: Arc<dyn ObjectStore>) -> FaultyStore {
        FaultyStore::new(inner, 0, Faults::none())
    }

    /// The wrapped store: the ground truth, read without faults.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    pub fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes the fault rates from now on (e.g. `Faults::none()` to let a
    /// run drain).
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// While on, every request fails without taking effect.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> Counts {
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Counts {
            get: l(&self.n.get),
            put: l(&self.n.put),
            list: l(&self.n.list),
            delete: self.n.delete.load(Ordering::SeqCst),
        }
    }

    pub fn injected(&self) -> Injected {
        let l = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Injected {
            errors: l(&self.n.errors),
            delays: l(&self.n.delays),
            lost_responses: l(&self.n.lost),
            conflicts: l(&self.n.conflicts),
            duplicates: l(&self.n.duplicates),
            reorders: l(&self.n.reorders),
        }
    }

    /// The generator for the next request of `op` on `key`.
    fn rng(&self, op: Op, key: &str) -> SplitMix {
        let n = {
            let mut d = self.draws.lock().unwrap_or_else(|p| p.into_inner());
            let c = d.entry((op, key.to_string())).or_insert(0);
            *c += 1;
            *c
        };
        let mut r = SplitMix::new(self.seed ^ (op as u64).wrapping_mul(0x1000_0000_01b3));
        let h = r.next_u64() ^ fnv(key) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        SplitMix::new(h)
    }

    fn count(&self, op: Op) {
        let c = match op {
            Op::Get => &self.n.get,
            Op::Put => &self.n.put,
            Op::List => &self.n.list,
        };
        c.fetch_add(1, Ordering::SeqCst);
    }

    /// Delay and refusal, decided before the request reaches the store.
    async fn before(&self, op: Op, key: &str) -> Result<(SplitMix, Faults), object_store::Error> {
        self.count(op);
        let f = self.faults();
        let mut r = self.rng(op, key);
        if self.outage.load(Ordering::SeqCst) {
            self.n.errors.fetch_add(1, Ordering::SeqCst);
            return Err(injected("outage (503 Service Unavailable)"));
        }
        if r.chance(f.delay) {
            self.n.delays.fetch_add(1, Ordering::SeqCst);
            let us = r.below(f.max_delay.as_micros() as u64 + 1);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        if r.chance(f.error) {
            self.n.errors.fetch_add(1, Ordering::SeqCst);
            return Err(injected("503 Service Unavailable"));
        }
        Ok((r, f))
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (mut r, f) = self.before(Op::Put, location.as_ref()).await?;
        if r.chance(f.conflict) {
            self.n.conflicts.fetch_add(1, Ordering::SeqCst);
            return Err(if r.chance(500) {
                object_store::Error::Precondition {
                    path: location.to_string(),
                    source: "injected fault: 412 Precondition Failed".into(),
                }
            } else {
                injected("409 Conflict (a conflicting operation is in progress)")
            });
        }
        let dup = r.chance(f.duplicate);
        let dup_delay = Duration::from_micros(r.below(f.max_delay.as_micros() as u64 + 1));
        let res = self
            .inner
            .put_opts(location, payload.clone(), opts.clone())
            .await?;
        if dup {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                self.n.duplicates.fetch_add(1, Ordering::SeqCst);
                self.n.put.fetch_add(1, Ordering::SeqCst);
                let inner = self.inner.clone();
                let loc = location.clone();
                h.spawn(async move {
                    tokio::time::sleep(dup_delay).await;
                    let _ = inner.put_opts(&loc, payload, opts).await;
                });
            }
        }
        if r.chance(f.lost_response) {
            self.n.lost.fetch_add(1, Ordering::SeqCst);
            return Err(injected("response lost (timeout after the write landed)"));
        }
        if r.chance(f.reorder) {
            self.n.reorders.fetch_add(1, Ordering::SeqCst);
            let us = r.below(f.max_delay.as_micros() as u64 * 2 + 1);
            tokio::time::sleep(Duration::from_micros(us)).await;
        }
        Ok(res)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.before(Op::Put, location.as_ref()).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.before(Op::Get, location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.before(Op::Get, location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // One DELETE per key, counted as the key goes by.
        let deletes = self.n.delete.clone();
        let counted = locations
            .inspect(move |_| {
                deletes.fetch_add(1, Ordering::SeqCst);
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.count(Op::List);
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        let f = self.faults();
        let mut r = self.rng(Op::List, &key);
        if self.outage.load(Ordering::SeqCst) || r.chance(f.error) {
            self.n.errors.fetch_add(1, Ordering::SeqCst);
            return stream::once(async { Err(injected("503 Service Unavailable")) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.before(Op::List, &key).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.before(Op::Put, to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn create() -> PutOptions {
        PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        }
    }

    /// The outcome of each of a fixed series of requests.
    async fn outcomes(store: &FaultyStore) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..200u32 {
            let key = Path::from(format!("k{i}"));
            let r = store.put_opts(&key, PutPayload::from(vec![i as u8]), create());
            out.push(match r.await {
                Ok(_) => "ok".to_string(),
                Err(e) => e.to_string(),
            });
            out.push(format!("{:?}", store.get(&key).await.map(|_| ()).is_ok()));
        }
        out
    }

    #[test]
    fn a_seed_replays_the_same_faults() {
        let rt = rt();
        let run = |seed| {
            let s = FaultyStore::new(Arc::new(InMemory::new()), seed, Faults::chaos());
            let o = rt.block_on(outcomes(&s));
            (o, s.injected())
        };
        let (a, ia) = run(9);
        let (b, ib) = run(9);
        let (c, _) = run(10);
        assert_eq!(a, b);
        assert_eq!(ia, ib);
        assert_ne!(a, c, "another seed, other faults");
        assert!(
            ia.errors > 0 && ia.lost_responses > 0 && ia.conflicts > 0,
            "{ia:?}"
        );
    }

    #[test]
    fn a_lost_response_lands_and_an_outage_does_not() {
        let rt = rt();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let lost = Faults {
            lost_response: 1000,
            ..Faults::none()
        };
        let s = FaultyStore::new(inner.clone(), 1, lost);
        rt.block_on(async {
            let key = Path::from("a");
            let r = s.put_opts(&key, PutPayload::from("x"), create()).await;
            assert!(r.is_err(), "the answer was lost");
            // The write landed: a retry meets it.
            assert!(inner.get(&key).await.is_ok());
            let again = s.put_opts(&key, PutPayload::from("x"), create()).await;
            assert!(matches!(
                again,
                Err(object_store::Error::AlreadyExists { .. })
            ));

            s.set_faults(Faults::none());
            s.set_outage(true);
            let b = Path::from("b");
            assert!(s
                .put_opts(&b, PutPayload::from("y"), create())
                .await
                .is_err());
            assert!(s.get(&b).await.is_err());
            assert!(inner.get(&b).await.is_err(), "an outage took effect");
        });
    }

    #[test]
    fn every_request_is_counted() {
        let rt = rt();
        let s = FaultyStore::counting(Arc::new(InMemory::new()));
        rt.block_on(async {
            for k in ["a/1", "a/2", "b/1"] {
                s.put(&Path::from(k), PutPayload::from("v")).await.unwrap();
            }
            s.get(&Path::from("a/1")).await.unwrap();
            let _: Vec<_> = s.list(Some(&Path::from("a"))).try_collect().await.unwrap();
            s.list_with_delimiter(None).await.unwrap();
            let gone: Vec<_> = s
                .delete_stream(
                    futures_util::stream::iter(vec![Ok(Path::from("a/1")), Ok(Path::from("b/1"))])
                        .boxed(),
                )
                .try_collect()
                .await
                .unwrap();
            assert_eq!(gone.len(), 2);
        });
        assert_eq!(
            s.counts(),
            Counts {
                get: 1,
                put: 3,
                list: 2,
                delete: 2
            }
        );
        assert_eq!(s.injected(), Injected::default());
    }
}
