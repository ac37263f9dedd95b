//! Object-store decorators for tests, simulations and fuzzing: a seeded
//! fault injector and a request counter (the same type with no faults).
//!
//! ```
//! use std::sync::Arc;
//! use amber::testing::{Faults, FaultyStore};
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
//!
//! A [`Hook`] (`with_hook`) sees each request before the faults do, and
//! can hold or refuse it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::hook::{Hook, Op, Request};
use super::rng::SplitMix;

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

/// The decorator. Wrap any store, hand it to `Bucket::from_store`.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    seed: u64,
    faults: Mutex<Faults>,
    outage: AtomicBool,
    draws: Mutex<HashMap<(Op, String), u64>>,
    n: Counters,
    hook: Option<Arc<dyn Hook>>,
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
            hook: None,
        }
    }

    /// Runs `hook` before each request from now on (see [`Hook`]).
    pub fn with_hook(mut self, hook: Arc<dyn Hook>) -> FaultyStore {
        self.hook = Some(hook);
        self
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
            Op::Delete => &*self.n.delete,
        };
        c.fetch_add(1, Ordering::SeqCst);
    }

    /// The hook's say, then delay and refusal, decided before the request
    /// reaches the store.
    async fn before(&self, op: Op, key: &str) -> Result<(SplitMix, Faults), object_store::Error> {
        if let Some(hook) = &self.hook {
            hook.before(Request { op, key }).await?;
        }
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
        // One DELETE per key, counted as the key goes by (after the hook,
        // which may refuse it).
        let deletes = self.n.delete.clone();
        let Some(hook) = self.hook.clone() else {
            let counted = locations
                .inspect(move |_| {
                    deletes.fetch_add(1, Ordering::SeqCst);
                })
                .boxed();
            return self.inner.delete_stream(counted);
        };
        let hooked = locations
            .then(move |location| {
                let hook = hook.clone();
                let deletes = deletes.clone();
                async move {
                    if let Ok(p) = &location {
                        let key = p.as_ref();
                        hook.before(Request {
                            op: Op::Delete,
                            key,
                        })
                        .await?;
                    }
                    deletes.fetch_add(1, Ordering::SeqCst);
                    location
                }
            })
            .boxed();
        self.inner.delete_stream(hooked)
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
        let listing = self.inner.list(prefix);
        let Some(hook) = self.hook.clone() else {
            return listing;
        };
        // The hook runs when the listing is first polled.
        stream::once(async move {
            hook.before(Request {
                op: Op::List,
                key: &key,
            })
            .await
            .map(|()| listing)
        })
        .try_flatten()
        .boxed()
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

    /// Records every request; refuses every one whose key starts with `no`.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Op, String)>>);

    #[async_trait]
    impl Hook for Recorder {
        async fn before(&self, req: Request<'_>) -> object_store::Result<()> {
            self.0.lock().unwrap().push((req.op, req.key.to_string()));
            if req.key.starts_with("no") {
                return Err(injected("refused by the hook"));
            }
            Ok(())
        }
    }

    #[test]
    fn a_hook_sees_every_request_and_a_refusal_takes_no_effect() {
        let rt = rt();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let hook = Arc::new(Recorder::default());
        let s = FaultyStore::counting(inner.clone()).with_hook(hook.clone());
        rt.block_on(async {
            s.put(&Path::from("yes/1"), PutPayload::from("v"))
                .await
                .unwrap();
            assert!(s
                .put(&Path::from("no/1"), PutPayload::from("v"))
                .await
                .is_err());
            assert!(inner.get(&Path::from("no/1")).await.is_err(), "it landed");
            s.get(&Path::from("yes/1")).await.unwrap();
            assert!(s.get(&Path::from("no/1")).await.is_err());
            let listed: Vec<_> = s
                .list(Some(&Path::from("yes")))
                .try_collect()
                .await
                .unwrap();
            assert_eq!(listed.len(), 1);
            assert!(s
                .list(Some(&Path::from("no")))
                .try_collect::<Vec<_>>()
                .await
                .is_err());
            s.list_with_delimiter(None).await.unwrap();
            let gone: Vec<_> = s
                .delete_stream(futures_util::stream::iter(vec![Ok(Path::from("yes/1"))]).boxed())
                .try_collect()
                .await
                .unwrap();
            assert_eq!(gone.len(), 1);
        });
        let seen = hook.0.lock().unwrap().clone();
        let want = [
            (Op::Put, "yes/1"),
            (Op::Put, "no/1"),
            (Op::Get, "yes/1"),
            (Op::Get, "no/1"),
            (Op::List, "yes"),
            (Op::List, "no"),
            (Op::List, ""),
            (Op::Delete, "yes/1"),
        ];
        let want: Vec<(Op, String)> = want.iter().map(|(o, k)| (*o, k.to_string())).collect();
        assert_eq!(seen, want);
        // Refused before they were counted (a LIST is counted at the call).
        assert_eq!(
            s.counts(),
            Counts {
                get: 1,
                put: 1,
                list: 3,
                delete: 1
            }
        );
    }

    #[test]
    fn a_hook_that_lets_everything_pass_changes_no_fault() {
        let rt = rt();
        let plain = FaultyStore::new(Arc::new(InMemory::new()), 9, Faults::chaos());
        let hooked = FaultyStore::new(Arc::new(InMemory::new()), 9, Faults::chaos())
            .with_hook(Arc::new(Recorder::default()));
        assert_eq!(
            rt.block_on(outcomes(&plain)),
            rt.block_on(outcomes(&hooked))
        );
        assert_eq!(plain.injected(), hooked.injected());
    }
}
