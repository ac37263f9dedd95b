//! Cluster mode, simulated: two writers (two `Store`s, hosts "a" and "b")
//! share one bucket and fight over one object, "room", for a couple of
//! hundred seeded steps per run.
//!
//! Each host reaches the shared in-memory bucket through its own link: a
//! `FaultyStore` (seeded faults, outages) under a `Gate` (below) that can
//! hold or refuse one kind of request. Each host has its own `ManualClock`,
//! so a step decides who believes whose lease has run out. Leases are
//! renewed in real time (every quarter TTL) and stamp the host's manual
//! clock.
//!
//! The ways the object changes hands:
//! - *cut*: the holder's link goes down and time moves a TTL on; its
//!   renewals fail, it fences itself, the other host takes over;
//! - *pause*: the holder's renewals stop (`set_renewals_paused`), same;
//! - *skew*: only the taker's clock jumps past the TTL, so the old owner
//!   still believes in its lease and its handle stays usable: only the
//!   ownership-record check after each PUT stands between its late commits
//!   and an acknowledgement (often on a slow link, so PUTs and record reads
//!   interleave with the claim);
//! - *race*: a skew where the old owner's next segment PUT, or its record
//!   read after the PUT, is held at its gate until the takeover is done;
//! - *race on the claim*: a skew where the taker's conditional PUT of the
//!   record is held while the old owner commits and is acknowledged;
//! - *stampede*: both hosts drop their handles and open at once;
//! - *restart*: a host's store is dropped and reopened on the same data
//!   directory (gracefully, or like a crash: no leave, uploads abandoned).
//!
//! Other steps: turns of 1 to 3 KV writes plus an overwrite of a "hot" key
//! with a few KB of incompressible bytes (so snapshots are taken mid-epoch),
//! waited for, left in flight, or in bursts; opening the object, dropping a
//! handle, reopening a broken one; fault profiles and outages on one link or
//! both; time passing; healing.
//!
//! Invariants, checked as the run goes and at its end:
//! 1. every acknowledged turn is seen, whole, by every later owner: when
//!    the object is opened, when a late acknowledgement arrives, and in
//!    the final state after healing;
//! 2. a turn committed through a handle after the other host opened the
//!    object is never acknowledged;
//! 3. every turn is atomic (all of its keys or none), a turn refused before
//!    its commit never appears, nothing else appears, and the hot key holds
//!    the newest turn present (the state is one history);
//! 4. errors are typed (`NotOwner`, `Fenced`, `Io`, `Timeout`, `Broken`,
//!    `Locked`) and nothing panics, on any thread (one known exception is
//!    counted, see `known_misclassified`);
//! 5. the bucket, read without faults, verifies at every open, every
//!    `AMBER_SIM_VERIFY_EVERY` steps and at the end: every epoch's log is
//!    whole from its first snapshot (an epoch with no snapshot, whose owner
//!    broke before its base landed, is allowed); at the end the ownership
//!    record names the final owner and its epoch, restorable up to its last
//!    commit.
//!
//! `AMBER_SIM_SEEDS` (default 20), `AMBER_SIM_SEED` (first seed, default 1),
//! `AMBER_SIM_STEPS` (default 200) and `AMBER_SIM_VERIFY_EVERY` (default 25,
//! 0 for only at the end) size a run; `AMBER_SIM_TRACE=1` prints every step;
//! `AMBER_SIM_STRICT=0` tolerates a fixed misclassification (see
//! `known_misclassified`). A failure
//! prints the seed and the last steps, and writes the whole log with the
//! bucket's listing to a file in the temp directory; `AMBER_SIM_SEEDS=1
//! AMBER_SIM_SEED=<seed>` replays its step sequence (not thread timing).
//!
//! Two more tests, `gc_keeps_what_the_next_takeover_rebuilds_from` and
//! `a_stale_restore_marker_does_not_undo_another_hosts_writes`, are
//! deterministic repros of findings, fixed since.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, KeyLayout};
use amber::testing::{Faults, FaultyStore, SplitMix};
use amber::{
    BucketConfig, ClusterConfig, Config, DurabilityLevel, ErrorKind, ListOptions, ManualClock,
    Object, Store, Ticket,
};
use async_trait::async_trait;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

const TTL_MS: u64 = 200;
const T0: u64 = 1_800_000_000_000;
const OBJ: &str = "room";
/// A waited-for turn gives up waiting after this (the ticket stays pending
/// and is looked at again later).
const WAIT: Duration = Duration::from_secs(3);

/// Panics on any thread, the shipper's and renewer's included.
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            prev(info)
        }));
    });
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Errors the API may return in this simulation.
fn typed(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::NotOwner
            | ErrorKind::Fenced
            | ErrorKind::Io
            | ErrorKind::Timeout
            | ErrorKind::Broken
            | ErrorKind::Locked
    )
}

/// Former finding, fixed: restore (`pitr::restore_to_file`, used by a
/// takeover to rebuild the object) reported a transient failure to GET a
/// segment as damage (`Corruption`, "segment unreadable: ... 503"). It now
/// fails with a retryable `Io`. The run fails on the old classification
/// unless `AMBER_SIM_STRICT=0`.
fn known_misclassified(e: &amber::Error) -> bool {
    e.kind() == ErrorKind::Corruption
        && e.message().contains("segment unreadable")
        && e.message().contains("injected fault")
}

fn strict() -> bool {
    std::env::var("AMBER_SIM_STRICT").map_or(true, |v| v != "0")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateOp {
    Put,
    Get,
}

/// A decorator that, while armed, holds every PUT or GET whose key contains
/// a pattern until released (or 5 s pass), and counts what it holds. The
/// test arms it, waits until a request is parked, acts, then releases. It
/// can also refuse such requests outright (`refuse`).
struct Gate {
    inner: Arc<dyn ObjectStore>,
    rule: std::sync::Mutex<Option<(GateOp, &'static str)>>,
    refuse: std::sync::Mutex<Option<(GateOp, &'static str)>>,
    parked: AtomicU64,
}

impl Gate {
    fn new(inner: Arc<dyn ObjectStore>) -> Gate {
        Gate {
            inner,
            rule: std::sync::Mutex::new(None),
            refuse: std::sync::Mutex::new(None),
            parked: AtomicU64::new(0),
        }
    }

    fn arm(&self, op: GateOp, pattern: &'static str) {
        self.parked.store(0, Ordering::SeqCst);
        *self.rule.lock().unwrap() = Some((op, pattern));
    }

    fn refuse(&self, op: GateOp, pattern: &'static str) {
        *self.refuse.lock().unwrap() = Some((op, pattern));
    }

    fn release(&self) {
        *self.rule.lock().unwrap() = None;
        *self.refuse.lock().unwrap() = None;
    }

    fn parked(&self) -> u64 {
        self.parked.load(Ordering::SeqCst)
    }

    fn holds(&self, op: GateOp, key: &Path) -> bool {
        self.rule
            .lock()
            .unwrap()
            .is_some_and(|(o, p)| o == op && key.as_ref().contains(p))
    }

    async fn pass(&self, op: GateOp, key: &Path) -> object_store::Result<()> {
        let refused = self
            .refuse
            .lock()
            .unwrap()
            .is_some_and(|(o, p)| o == op && key.as_ref().contains(p));
        if refused {
            return Err(object_store::Error::Generic {
                store: "Gate",
                source: "refused by the test (503)".into(),
            });
        }
        if !self.holds(op, key) {
            return Ok(());
        }
        self.parked.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.holds(op, key) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({})", self.inner)
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Gate {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.pass(GateOp::Put, location).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.pass(GateOp::Put, location).await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.pass(GateOp::Get, location).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.pass(GateOp::Get, location).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// One host's way to the bucket.
struct Link {
    faulty: Arc<FaultyStore>,
    gate: Arc<Gate>,
    /// Steps left before the fault profile is switched off (0: none).
    fault_steps: u32,
    /// Steps left before the outage ends (0: none).
    outage_steps: u32,
}

impl Link {
    fn new(inner: &Arc<dyn ObjectStore>, seed: u64) -> Link {
        let faulty = Arc::new(FaultyStore::new(inner.clone(), seed, Faults::none()));
        let gate = Arc::new(Gate::new(faulty.clone()));
        Link {
            faulty,
            gate,
            fault_steps: 0,
            outage_steps: 0,
        }
    }

    fn heal(&mut self) {
        self.faulty.set_faults(Faults::none());
        self.faulty.set_outage(false);
        self.gate.release();
        self.fault_steps = 0;
        self.outage_steps = 0;
    }
}

struct Handle {
    obj: Object,
    /// `Sim::era` right after this handle's open: any later open (by the
    /// other host) makes it stale.
    era: u64,
    epoch: u64,
}

struct Host {
    name: &'static str,
    /// `None` only while the host restarts.
    store: Option<Store>,
    clock: Arc<ManualClock>,
    handle: Option<Handle>,
    paused: bool,
    bucket: Bucket,
    retention: Duration,
    dir: tempfile::TempDir,
}

impl Host {
    fn cluster(&self) -> &Arc<amber::cluster::Cluster> {
        self.store().cluster().expect("cluster mode")
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the host is up")
    }
}

#[derive(Debug)]
enum Outcome {
    /// A write of the turn failed before its commit: it must never appear.
    Refused(ErrorKind),
    /// `end_turn` failed: it may or may not have committed.
    Unknown(ErrorKind),
    Pending(Ticket),
    /// Pending when its host's store went away: never settles.
    Abandoned,
    Acked,
    Failed(ErrorKind),
}

/// A turn's ticket, or its error and whether a write was refused before
/// the commit (`true`) or `end_turn` failed (`false`: it may have committed).
type TurnResult = std::result::Result<Ticket, (bool, amber::Error)>;

/// One turn on `obj`: its keys, the hot key, and `end_turn`.
fn turn_on(obj: &mut Object, keys: &[u64]) -> TurnResult {
    for &k in keys {
        obj.put(&key(k), &val(k)).map_err(|e| (true, e))?;
    }
    obj.put(HOT, &hot_val(keys[0])).map_err(|e| (true, e))?;
    obj.end_turn().map_err(|e| (false, e))
}

struct Turn {
    keys: Vec<u64>,
    host: usize,
    epoch: u64,
    era: u64,
    /// Committed after the other host had opened the object.
    stale: bool,
    /// Committed while the host believed in its lease.
    usable: bool,
    step: usize,
    outcome: Outcome,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    turns: u64,
    acked: u64,
    opens: u64,
    takeovers: u64,
    not_owner: u64,
    /// `NotOwner` naming the opener's own address.
    not_owner_self: u64,
    /// Turns refused or failed with `Fenced`.
    fenced: u64,
    /// Stale turns committed while the old owner still believed in its
    /// lease: only the record check after the PUT could refuse them.
    stale_commits: u64,
    stale_fenced_by_record: u64,
    /// Turns whose acknowledgement the record check refused (committed
    /// before or after the takeover).
    record_fenced: u64,
    cuts: u64,
    pauses: u64,
    skews: u64,
    races: u64,
    /// Races whose held request was parked across a takeover.
    races_held: u64,
    stampedes: u64,
    restarts: u64,
    /// Epochs in the bucket at the end, those without a snapshot, and
    /// snapshots (each epoch's base, and those taken as the log grew).
    epochs: u64,
    empty_epochs: u64,
    snapshots: u64,
    faults: u64,
    /// Turns present in the final state without an acknowledgement.
    survived_unacked: u64,
    /// Of those, turns whose acknowledgement was refused with `Fenced`.
    survived_fenced: u64,
    /// Transient bucket errors reported as `Corruption` (see
    /// `known_misclassified`).
    misclassified: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.turns += o.turns;
        self.acked += o.acked;
        self.opens += o.opens;
        self.takeovers += o.takeovers;
        self.not_owner += o.not_owner;
        self.not_owner_self += o.not_owner_self;
        self.fenced += o.fenced;
        self.stale_commits += o.stale_commits;
        self.stale_fenced_by_record += o.stale_fenced_by_record;
        self.record_fenced += o.record_fenced;
        self.cuts += o.cuts;
        self.pauses += o.pauses;
        self.skews += o.skews;
        self.races += o.races;
        self.races_held += o.races_held;
        self.stampedes += o.stampedes;
        self.restarts += o.restarts;
        self.epochs += o.epochs;
        self.empty_epochs += o.empty_epochs;
        self.snapshots += o.snapshots;
        self.faults += o.faults;
        self.survived_unacked += o.survived_unacked;
        self.survived_fenced += o.survived_fenced;
        self.misclassified += o.misclassified;
    }
}

impl Stats {
    fn line(&self) -> String {
        format!(
            "turns {:>3} (acked {:>3}, fenced {:>3} [{:>2} by the record check], stale {:>2}, \
             unacked but kept {:>2}) | opens {:>2}, takeovers {:>2}, NotOwner {:>2} ({:>2} naming itself) | cuts {:>2}, \
             pauses {:>2}, skews {:>2}, races {:>2} ({:>2} held), stampedes {:>2}, restarts {:>2} | \
             epochs {:>2} ({:>2} empty), snapshots {:>2} | faults {:>4}, misclassified {}",
            self.turns,
            self.acked,
            self.fenced,
            self.record_fenced,
            self.stale_commits,
            self.survived_unacked,
            self.opens,
            self.takeovers,
            self.not_owner,
            self.not_owner_self,
            self.cuts,
            self.pauses,
            self.skews,
            self.races,
            self.races_held,
            self.stampedes,
            self.restarts,
            self.epochs,
            self.empty_epochs,
            self.snapshots,
            self.faults,
            self.misclassified
        )
    }
}

fn key(n: u64) -> String {
    format!("k{n:06}")
}

fn val(n: u64) -> Vec<u8> {
    format!("v{n}").into_bytes()
}

/// Every turn also overwrites this key with a few KB of incompressible
/// bytes named after the turn's first key, so the log outgrows the
/// database and snapshots (and the retention pass after each) happen
/// mid-epoch; and the final value must come from the newest turn present.
const HOT: &str = "hot";

fn hot_val(n: u64) -> Vec<u8> {
    let mut r = SplitMix::new(n ^ 0x407);
    let len = 1000 + (n * 7919 % 2500) as usize;
    let mut v = format!("h{n}:").into_bytes();
    v.extend((0..len).map(|_| r.next_u64() as u8));
    v
}

struct Sim {
    seed: u64,
    rng: SplitMix,
    hosts: Vec<Host>,
    inner: Arc<dyn ObjectStore>,
    links: Vec<Link>,
    layout: KeyLayout,
    rt: tokio::runtime::Runtime,
    /// Bumped by every successful open.
    era: u64,
    /// Host of the last successful open.
    owner: Option<usize>,
    next_key: u64,
    turns: Vec<Turn>,
    log: Vec<String>,
    trace: bool,
    step: usize,
    /// `check_bucket` every this many steps and at every open (0: never).
    verify_every: usize,
    stats: Stats,
    started: Instant,
}

fn open_host(name: &'static str, bucket: &Bucket) -> Host {
    open_host_with(name, bucket, amber::PitrConfig::default().retention)
}

fn open_host_with(name: &'static str, bucket: &Bucket, retention: Duration) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let store = start_store(name, bucket, dir.path(), &clock, retention)
        .unwrap_or_else(|e| panic!("open store {name}: {e}"));
    Host {
        name,
        store: Some(store),
        clock,
        handle: None,
        paused: false,
        bucket: bucket.clone(),
        retention,
        dir,
    }
}

fn start_store(
    name: &'static str,
    bucket: &Bucket,
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    retention: Duration,
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
    cfg.sync_threads = 1;
    Store::open(cfg)
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = KeyLayout::new("sim").unwrap();
        let links = vec![Link::new(&inner, seed), Link::new(&inner, !seed)];
        let hosts: Vec<Host> = ["a", "b"]
            .into_iter()
            .zip(&links)
            .map(|(name, l)| {
                let link: Arc<dyn ObjectStore> = l.gate.clone();
                open_host(name, &Bucket::from_store(link, layout.clone()))
            })
            .collect();
        Sim {
            seed,
            // Mixed, so that nearby seeds do not share a stream.
            rng: SplitMix::new(SplitMix::new(seed ^ 0x5EED_C1A5_7E25_0001).next_u64()),
            hosts,
            inner,
            links,
            layout,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap(),
            era: 0,
            owner: None,
            next_key: 0,
            turns: Vec::new(),
            log: Vec::new(),
            trace: std::env::var("AMBER_SIM_TRACE").is_ok_and(|v| v == "1"),
            step: 0,
            verify_every: env_u64("AMBER_SIM_VERIFY_EVERY", 25) as usize,
            stats: Stats::default(),
            started: Instant::now(),
        }
    }

    fn note(&mut self, s: String) {
        let line = format!(
            "[{} +{}ms] {s}",
            self.step,
            self.started.elapsed().as_millis()
        );
        if self.trace {
            eprintln!("seed {} {line}", self.seed);
        }
        self.log.push(line);
    }

    #[track_caller]
    fn fail(&self, what: String) -> ! {
        let tail = self.log.len().saturating_sub(60);
        let path = std::env::temp_dir().join(format!("amber-cluster-sim-seed-{}.log", self.seed));
        let mut full = self.log.join("\n");
        if let Some(st) = self.hosts.iter().find_map(|h| h.store.as_ref()) {
            if let Ok(h) = st.history(OBJ) {
                for e in &h.epochs {
                    full.push_str(&format!(
                        "\nbucket: epoch {}: manifest {:?}, snapshots {:?}, segments {:?}",
                        e.epoch,
                        e.manifest,
                        e.snapshots.iter().map(|s| s.seq).collect::<Vec<_>>(),
                        e.segments
                            .iter()
                            .map(|s| (s.first, s.last))
                            .collect::<Vec<_>>()
                    ));
                }
            }
        }
        let saved = std::fs::write(&path, format!("{what}\n{full}\n")).is_ok();
        panic!(
            "seed {}: {what}\n--- last steps ---\n{}\n--- {}replay: AMBER_SIM_SEEDS=1 AMBER_SIM_SEED={} ---",
            self.seed,
            self.log[tail..].join("\n"),
            if saved { format!("full log in {}; ", path.display()) } else { String::new() },
            self.seed
        );
    }

    fn check_typed(&mut self, what: &str, e: &amber::Error) {
        if known_misclassified(e) {
            self.stats.misclassified += 1;
            if !strict() {
                return;
            }
        }
        if !typed(e.kind()) {
            self.fail(format!(
                "{what}: untyped or unexpected error {:?}: {e}",
                e.kind()
            ));
        }
    }

    fn other(h: usize) -> usize {
        1 - h
    }

    // ---- time and leases ------------------------------------------------

    /// The `renewed_ms` of `host`'s current lease, read from the bucket
    /// itself (no faults).
    fn stored_lease(&self, h: usize) -> Option<u64> {
        let inc = self.hosts[h].cluster().incarnation();
        let path = self.layout.host(&inc);
        let inner = self.inner.clone();
        let bytes = self.rt.block_on(async move {
            match inner.get(&path).await {
                Ok(r) => r.bytes().await.ok(),
                Err(_) => None,
            }
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v.get("renewed_ms")?.as_u64()
    }

    /// Waits (real time, bounded) until `h` has renewed at or after its
    /// clock's current time. False if it did not (faults, or paused).
    fn wait_renewed(&self, h: usize, limit: Duration) -> bool {
        let now = self.hosts[h].clock.now();
        let deadline = Instant::now() + limit;
        loop {
            if self.hosts[h].cluster().lease_valid()
                && self.stored_lease(h).is_some_and(|t| t >= now)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Moves the clocks of `which` hosts on by `ms`, in steps under half a
    /// TTL; after each, a host that renews and whose stored lease is half a
    /// TTL old is given the time (bounded) to renew.
    fn advance(&mut self, which: &[usize], ms: u64) {
        let mut left = ms;
        while left > 0 {
            let d = left.min(TTL_MS / 2 - 1);
            left -= d;
            for &h in which {
                self.hosts[h].clock.advance(d);
            }
            for &h in which {
                let now = self.hosts[h].clock.now();
                let due = self.stored_lease(h).is_none_or(|t| now >= t + TTL_MS / 2);
                if self.can_renew(h) && due {
                    self.wait_renewed(h, Duration::from_millis(200));
                }
            }
        }
    }

    // ---- turns ----------------------------------------------------------

    /// Keys for a new turn of 1 to 3 writes.
    fn next_keys(&mut self) -> Vec<u64> {
        let n = 1 + self.rng.below(3);
        let keys: Vec<u64> = (0..n).map(|i| self.next_key + i).collect();
        self.next_key += n;
        keys
    }

    /// A turn by `h` through its handle; waits for the ticket if `wait`.
    fn write(&mut self, h: usize, wait: bool) {
        if self.hosts[h].handle.is_none() {
            return;
        }
        let keys = self.next_keys();
        let hd = self.hosts[h].handle.as_mut().unwrap();
        let (era, epoch, usable) = (hd.era, hd.epoch, !hd.obj.is_broken());
        let stale = era != self.era;
        let r = turn_on(&mut hd.obj, &keys);
        self.book(h, keys, (era, epoch), stale, usable, wait, r);
    }

    /// Records a turn's outcome (and waits for its ticket if `wait`).
    #[allow(clippy::too_many_arguments)]
    fn book(
        &mut self,
        h: usize,
        keys: Vec<u64>,
        (era, epoch): (u64, u64),
        stale: bool,
        usable: bool,
        wait: bool,
        r: TurnResult,
    ) {
        self.stats.turns += 1;
        let outcome = match r {
            Ok(t) => Outcome::Pending(t),
            Err((refused, e)) => {
                self.check_typed(if refused { "put" } else { "end_turn" }, &e);
                if refused {
                    Outcome::Refused(e.kind())
                } else {
                    Outcome::Unknown(e.kind())
                }
            }
        };
        if matches!(
            outcome,
            Outcome::Refused(ErrorKind::Fenced) | Outcome::Unknown(ErrorKind::Fenced)
        ) {
            self.stats.fenced += 1;
        }
        let committed = matches!(outcome, Outcome::Pending(_));
        if stale && committed {
            self.stats.stale_commits += usable as u64;
        }
        let desc = format!(
            "{} writes {:?} (epoch {epoch}, era {era}/{}{}{}): {}",
            self.hosts[h].name,
            keys,
            self.era,
            if stale { ", STALE" } else { "" },
            if wait { "" } else { ", in flight" },
            match &outcome {
                Outcome::Pending(t) => format!("committed as {}", t.seq()),
                o => format!("{o:?}"),
            }
        );
        self.note(desc);
        self.turns.push(Turn {
            keys,
            host: h,
            epoch,
            era,
            stale,
            usable,
            step: self.step,
            outcome,
        });
        if wait && committed {
            let i = self.turns.len() - 1;
            self.settle(i, WAIT);
        }
    }

    /// Looks at turn `i`'s ticket, waiting at most `wait`.
    fn settle(&mut self, i: usize, wait: Duration) {
        let Outcome::Pending(t) = &self.turns[i].outcome else {
            return;
        };
        let t = t.clone();
        let r = if wait.is_zero() {
            match t.poll_done() {
                Some(r) => r,
                None => return,
            }
        } else {
            match t.wait_timeout(wait) {
                Err(_) if !t.is_done() => return,
                r => r,
            }
        };
        let turn = &self.turns[i];
        let (host, stale, keys, step) = (turn.host, turn.stale, turn.keys.clone(), turn.step);
        match r {
            Ok(_) => {
                if stale {
                    self.fail(format!(
                        "invariant 2: turn {keys:?} was committed by {} at step {step} after the \
                         other host had opened the object, and it was acknowledged",
                        self.hosts[host].name
                    ));
                }
                self.turns[i].outcome = Outcome::Acked;
                self.stats.acked += 1;
                self.note(format!(
                    "{} turn {keys:?} acknowledged",
                    self.hosts[host].name
                ));
                self.check_owner_sees(&[i], "late acknowledgement");
            }
            Err(e) => {
                self.check_typed("ticket", &e);
                if e.kind() == ErrorKind::Fenced {
                    self.stats.fenced += 1;
                    // The record check (not the lease) refused it.
                    if e.message().contains("now belongs to") {
                        self.stats.record_fenced += 1;
                    }
                    if stale && self.turns[i].usable {
                        self.stats.stale_fenced_by_record += 1;
                    }
                }
                self.note(format!(
                    "{} turn {keys:?} failed: {:?}: {e}",
                    self.hosts[host].name,
                    e.kind()
                ));
                self.turns[i].outcome = Outcome::Failed(e.kind());
            }
        }
    }

    fn settle_all(&mut self, wait: Duration) {
        for i in 0..self.turns.len() {
            self.settle(i, wait);
        }
    }

    /// Invariant 1 for turns `idx`, on the current owner's handle (the one
    /// opened last), if it is still there and usable.
    fn check_owner_sees(&mut self, idx: &[usize], why: &str) {
        let Some(o) = self.owner else { return };
        let era = self.era;
        let mut missing = Vec::new();
        {
            let Some(hd) = self.hosts[o].handle.as_mut() else {
                return;
            };
            if hd.era != era {
                return;
            }
            for &i in idx {
                for &k in &self.turns[i].keys {
                    match hd.obj.get(&key(k)) {
                        Ok(Some(v)) if v == val(k) => {}
                        Ok(got) => missing.push((i, k, got)),
                        Err(_) => return, // the handle broke meanwhile
                    }
                }
            }
        }
        if let Some((i, k, got)) = missing.first() {
            let t = &self.turns[*i];
            self.fail(format!(
                "invariant 1 ({why}): turn {:?} by {} (epoch {}, era {}, step {}) was \
                 acknowledged, but the owner {} (era {era}) reads key {} as {:?}",
                t.keys,
                self.hosts[t.host].name,
                t.epoch,
                t.era,
                t.step,
                self.hosts[o].name,
                key(*k),
                got.as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }

    // ---- ownership ------------------------------------------------------

    fn open(&mut self, h: usize) -> bool {
        if self.hosts[h].handle.is_some() {
            return false;
        }
        let r = self.hosts[h].store().open_object(OBJ);
        self.opened(h, r)
    }

    /// Books the outcome of an open by `h`, and checks invariant 1 on it.
    fn opened(&mut self, h: usize, r: amber::Result<Object>) -> bool {
        match r {
            Ok(obj) => {
                self.era += 1;
                self.stats.opens += 1;
                let takeover = self.owner.is_some_and(|o| o != h);
                if takeover {
                    self.stats.takeovers += 1;
                }
                let epoch = obj.epoch();
                self.note(format!(
                    "{} opens: epoch {epoch}, seq {}, era {}{}",
                    self.hosts[h].name,
                    obj.seq(),
                    self.era,
                    if takeover { ", TAKEOVER" } else { "" }
                ));
                self.owner = Some(h);
                self.hosts[h].handle = Some(Handle {
                    obj,
                    era: self.era,
                    epoch,
                });
                let acked: Vec<usize> = (0..self.turns.len())
                    .filter(|&i| matches!(self.turns[i].outcome, Outcome::Acked))
                    .collect();
                self.check_owner_sees(&acked, "at open");
                if self.verify_every > 0 {
                    self.check_bucket();
                }
                true
            }
            Err(e) => {
                self.check_typed("open_object", &e);
                if e.kind() == ErrorKind::NotOwner {
                    self.stats.not_owner += 1;
                    // The record names an older incarnation of this very
                    // host whose lease still runs (after a restart).
                    if e.owner() == Some(self.hosts[h].cluster().advertise()) {
                        self.stats.not_owner_self += 1;
                    }
                }
                self.note(format!(
                    "{} open refused: {:?}: {e}",
                    self.hosts[h].name,
                    e.kind()
                ));
                false
            }
        }
    }

    fn drop_handle(&mut self, h: usize, why: &str) {
        if let Some(hd) = self.hosts[h].handle.take() {
            self.note(format!(
                "{} drops its handle (epoch {}, era {}): {why}",
                self.hosts[h].name, hd.epoch, hd.era
            ));
        }
    }

    // ---- the bucket -----------------------------------------------------

    fn random_faults(&mut self) -> Faults {
        let r = &mut self.rng;
        Faults {
            error: r.below(200) as u32,
            delay: r.below(400) as u32,
            max_delay: Duration::from_millis(1 + r.below(15)),
            lost_response: r.below(200) as u32,
            conflict: r.below(60) as u32,
            duplicate: r.below(80) as u32,
            reorder: r.below(100) as u32,
        }
    }

    fn heal_links(&mut self) {
        for l in &mut self.links {
            l.heal();
        }
    }

    /// Whether `h` can renew its lease now (as far as the test knows).
    fn can_renew(&self, h: usize) -> bool {
        !self.hosts[h].paused && self.links[h].outage_steps == 0
    }

    /// One step of the countdowns of fault profiles and outages.
    fn tick_links(&mut self) {
        for h in 0..2 {
            let name = self.hosts[h].name;
            let l = &mut self.links[h];
            if l.fault_steps > 0 {
                l.fault_steps -= 1;
                if l.fault_steps == 0 {
                    l.faulty.set_faults(Faults::none());
                    self.note(format!("{name}'s link: faults off"));
                }
            }
            let l = &mut self.links[h];
            if l.outage_steps > 0 {
                l.outage_steps -= 1;
                if l.outage_steps == 0 {
                    l.faulty.set_outage(false);
                    self.note(format!("{name}'s link is back"));
                }
            }
        }
    }

    /// The hosts a fault step hits: one link, or both.
    fn some_links(&mut self, h: usize) -> Vec<usize> {
        if self.rng.chance(400) {
            vec![0, 1]
        } else {
            vec![h]
        }
    }

    // ---- changes of hands -----------------------------------------------

    /// The holder's link goes down; time moves a TTL on while the other
    /// host renews, so the holder's lease lapses; the other takes over.
    fn cut(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.cuts += 1;
        let steps = 3 + self.rng.below(15) as u32;
        self.note(format!(
            "cut: {}'s link is down for {steps} steps; time moves on a TTL",
            self.hosts[holder].name
        ));
        self.links[holder].faulty.set_outage(true);
        self.links[holder].outage_steps = steps;
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        let ms = TTL_MS + 1 + self.rng.below(TTL_MS / 2);
        self.advance(&[0, 1], ms);
        if self.rng.chance(700) {
            let wait = self.rng.chance(500);
            self.write(holder, wait);
        }
        self.open(taker);
    }

    /// The holder stops renewing; both clocks move past its TTL (the other
    /// host renewing along), so the holder fences itself; the other then
    /// tries to take the object.
    fn pause(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.pauses += 1;
        self.note(format!(
            "pause: {} stops renewing; time moves on a TTL",
            self.hosts[holder].name
        ));
        self.hosts[holder].cluster().set_renewals_paused(true);
        self.hosts[holder].paused = true;
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        let ms = TTL_MS + 1 + self.rng.below(TTL_MS / 2);
        self.advance(&[0, 1], ms);
        if self.rng.chance(700) {
            let wait = self.rng.chance(500);
            self.write(holder, wait);
        }
        self.open(taker);
    }

    /// Only the taker's clock jumps past the TTL: the holder still believes
    /// in its lease and keeps its handle usable; the taker (whose own lease
    /// lapsed with the jump) rejoins under a new incarnation.
    fn jump_taker_clock(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let jump = TTL_MS + 1 + self.rng.below(TTL_MS);
        let base = self.hosts[holder]
            .clock
            .now()
            .max(self.hosts[taker].clock.now());
        self.note(format!(
            "skew: {}'s clock jumps to {jump} ms past {}'s, which keeps renewing on its own",
            self.hosts[taker].name, self.hosts[holder].name
        ));
        self.hosts[taker].clock.set(base + jump);
        if self.can_renew(taker) {
            self.wait_renewed(taker, Duration::from_millis(500));
        }
    }

    /// A skewed takeover with turns of the old owner in flight across it
    /// and after it, often on a slow link.
    fn skew(&mut self, holder: usize) {
        let taker = Self::other(holder);
        self.stats.skews += 1;
        self.jump_taker_clock(holder);
        let l = &self.links[holder];
        let slow = l.fault_steps == 0 && l.outage_steps == 0 && self.rng.chance(600);
        if slow {
            let f = Faults {
                delay: 1000,
                max_delay: Duration::from_millis(2 + self.rng.below(20)),
                ..Faults::none()
            };
            self.note(format!("{}'s link is slow: {f:?}", self.hosts[holder].name));
            self.links[holder].faulty.set_faults(f);
        }
        for _ in 0..self.rng.below(3) {
            self.write(holder, false);
        }
        self.open(taker);
        for _ in 0..self.rng.below(3) {
            let wait = self.rng.chance(300);
            self.write(holder, wait);
        }
        if slow {
            self.settle_all(Duration::from_millis(300));
            self.links[holder].faulty.set_faults(Faults::none());
        }
    }

    /// A skewed takeover that lands inside the old owner's acknowledgement
    /// path: its segment PUT, or its read of the record after the PUT, is
    /// held until the other host has taken the object.
    fn race(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let usable = self.hosts[holder]
            .handle
            .as_ref()
            .is_some_and(|hd| !hd.obj.is_broken() && hd.era == self.era);
        if !usable {
            return self.skew(holder);
        }
        self.stats.races += 1;
        self.jump_taker_clock(holder);
        let (op, pattern) = if self.rng.chance(500) {
            (GateOp::Put, "/segments/")
        } else {
            (GateOp::Get, "/owners/")
        };
        self.note(format!(
            "race: {}'s link holds {op:?}s of {pattern} across the takeover",
            self.hosts[holder].name
        ));
        self.links[holder].gate.arm(op, pattern);
        // The old owner's turn runs on a thread: `end_turn` may wait for the
        // held request (a snapshot falls due after the commit).
        let keys = self.next_keys();
        let mut hd = self.hosts[holder].handle.take().unwrap();
        let (era, epoch, usable) = (hd.era, hd.epoch, !hd.obj.is_broken());
        let turn = std::thread::spawn(move || {
            let r = turn_on(&mut hd.obj, &keys);
            (hd, keys, r)
        });
        // (`end_turn` usually returns before the upload reaches the gate.)
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.links[holder].gate.parked() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = self.links[holder].gate.parked() > 0;
        self.stats.races_held += held as u64;
        self.note(format!(
            "race: {} request(s) held",
            self.links[holder].gate.parked()
        ));
        self.open(taker);
        self.links[holder].gate.release();
        let (hd, keys, r) = turn.join().expect("the turn panicked");
        self.hosts[holder].handle = Some(hd);
        // Committed before the takeover (or about then): not counted stale;
        // its acknowledgement is allowed only if the new owner has it.
        self.book(holder, keys, (era, epoch), false, usable, false, r);
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        self.settle_all(Duration::from_millis(1500));
    }

    /// A skewed takeover whose claim (the conditional PUT of the record) is
    /// held while the old owner commits and is acknowledged: what the old
    /// owner acknowledged before the record changed must be in what the
    /// new owner rebuilds from.
    fn race_claim(&mut self, holder: usize) {
        let taker = Self::other(holder);
        let usable = self.hosts[holder]
            .handle
            .as_ref()
            .is_some_and(|hd| !hd.obj.is_broken() && hd.era == self.era);
        if !usable || self.hosts[taker].handle.is_some() {
            return self.skew(holder);
        }
        self.stats.races += 1;
        self.jump_taker_clock(holder);
        self.note(format!(
            "race: {}'s claim is held while {} commits",
            self.hosts[taker].name, self.hosts[holder].name
        ));
        let gate = self.links[taker].gate.clone();
        gate.arm(GateOp::Put, "/owners/");
        let store = self.hosts[taker].store().clone();
        let opening = std::thread::spawn(move || store.open_object(OBJ));
        let deadline = Instant::now() + Duration::from_secs(1);
        while gate.parked() == 0 && !opening.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let held = gate.parked() > 0;
        self.stats.races_held += held as u64;
        self.note(format!("race: claim held: {held}"));
        for _ in 0..1 + self.rng.below(2) {
            self.write(holder, true);
        }
        gate.release();
        let r = opening.join().expect("the open panicked");
        self.opened(taker, r);
        if self.rng.chance(500) {
            self.write(holder, false);
        }
        self.settle_all(Duration::from_millis(500));
    }

    /// Both hosts drop their handles and open the object at once: at most
    /// one claim of a given epoch may win.
    fn stampede(&mut self) {
        self.stats.stampedes += 1;
        for h in 0..2 {
            self.drop_handle(h, "stampede");
        }
        if self.rng.chance(500) {
            // Nobody's lease looks live to anybody.
            let ms = TTL_MS + 1;
            self.note("stampede: both clocks jump a TTL".into());
            for h in &self.hosts {
                h.clock.advance(ms);
            }
            for h in 0..2 {
                if self.can_renew(h) {
                    self.wait_renewed(h, Duration::from_millis(500));
                }
            }
        }
        self.note("stampede: both hosts open at once".into());
        let start = Arc::new(std::sync::Barrier::new(2));
        let opening: Vec<_> = (0..2)
            .map(|h| {
                let store = self.hosts[h].store().clone();
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    store.open_object(OBJ)
                })
            })
            .collect();
        let mut results: Vec<(usize, amber::Result<Object>)> = opening
            .into_iter()
            .enumerate()
            .map(|(h, j)| (h, j.join().expect("the open panicked")))
            .collect();
        if let [(_, Ok(x)), (_, Ok(y))] = &results[..] {
            if x.epoch() == y.epoch() {
                self.fail(format!(
                    "both hosts opened the object in epoch {}",
                    x.epoch()
                ));
            }
        }
        // Book the earlier claim (the lower epoch) first.
        results.sort_by_key(|(_, r)| r.as_ref().map_or(u64::MAX, |o| o.epoch()));
        for (h, r) in results {
            self.opened(h, r);
        }
    }

    /// The host restarts: its handle goes, its store is dropped, and a new
    /// store opens on the same data directory under a new incarnation.
    /// Gracefully, uploads in flight drain and the host leaves (deletes
    /// its lease); like a crash, in-flight work is abandoned and the lease
    /// is left to run out.
    fn restart(&mut self, h: usize) {
        let crash = self.rng.chance(500);
        self.stats.restarts += 1;
        self.note(format!(
            "{} restarts{}",
            self.hosts[h].name,
            if crash {
                " (crash: in-flight work abandoned, no leave)"
            } else {
                ""
            }
        ));
        self.drop_handle(h, "restart");
        let old = self.hosts[h].store.take().expect("the host is up");
        if crash {
            // Inside a runtime, the cluster does not leave and the shipper
            // does not wait for its uploads.
            let _in_runtime = self.rt.enter();
            drop(old);
        } else {
            drop(old);
        }
        for i in 0..self.turns.len() {
            if self.turns[i].host == h {
                self.settle(i, Duration::ZERO);
                if matches!(self.turns[i].outcome, Outcome::Pending(_)) {
                    self.turns[i].outcome = Outcome::Abandoned;
                }
            }
        }
        self.links[h].heal();
        self.hosts[h].paused = false;
        let host = &self.hosts[h];
        let mut last = None;
        for _ in 0..5 {
            match start_store(
                host.name,
                &host.bucket,
                host.dir.path(),
                &host.clock,
                host.retention,
            ) {
                Ok(st) => {
                    self.hosts[h].store = Some(st);
                    let inc = self.hosts[h].cluster().incarnation();
                    self.note(format!("{} is back as {inc}", self.hosts[h].name));
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        self.fail(format!(
            "restarting {} failed 5 times on a healed link: {last:?}",
            self.hosts[h].name
        ));
    }

    /// Renewals resume and the clocks agree again (the slow one jumps
    /// forward, which may lapse its lease).
    fn heal_hosts(&mut self) {
        let now = self.hosts.iter().map(|h| h.clock.now()).max().unwrap();
        for h in 0..2 {
            let host = &mut self.hosts[h];
            host.clock.set(now.max(host.clock.now()));
            if host.paused {
                host.cluster().set_renewals_paused(false);
                host.paused = false;
            }
        }
        self.note("heal: renewals resume, clocks agree".into());
        for h in 0..2 {
            if self.can_renew(h) {
                self.wait_renewed(h, Duration::from_millis(300));
            }
        }
    }

    // ---- the run --------------------------------------------------------

    fn step(&mut self) {
        self.tick_links();
        let h = self.rng.below(2) as usize;
        let roll = self.rng.below(100);
        // Most turns go to the host that opened the object last.
        let writer = |sim: &mut Sim, bias: u32| match sim.owner {
            Some(o) if sim.hosts[o].handle.is_some() && sim.rng.chance(bias) => o,
            _ => h,
        };
        let holder = self.owner.unwrap_or(h);
        match roll {
            0..=31 => {
                let w = writer(self, 850);
                // A broken handle is usually reopened first.
                if self.hosts[w]
                    .handle
                    .as_ref()
                    .is_some_and(|hd| hd.obj.is_broken())
                    && self.rng.chance(500)
                {
                    self.drop_handle(w, "broken");
                    self.open(w);
                }
                self.write(w, true);
            }
            32..=41 => {
                let w = writer(self, 700);
                self.write(w, false);
            }
            42..=46 => {
                // A burst of turns in flight (one PUT may carry several).
                let w = writer(self, 900);
                for _ in 0..2 + self.rng.below(4) {
                    self.write(w, false);
                }
                self.settle_all(Duration::from_millis(100));
            }
            47..=48 => self.settle_all(Duration::from_millis(200)),
            49..=57 => {
                if self.hosts[h]
                    .handle
                    .as_ref()
                    .is_some_and(|hd| hd.obj.is_broken())
                {
                    self.drop_handle(h, "broken");
                }
                self.open(h);
            }
            58..=60 => self.drop_handle(h, "hibernates"),
            61..=66 => {
                let f = self.random_faults();
                let n = 5 + self.rng.below(25) as u32;
                for l in self.some_links(h) {
                    self.note(format!(
                        "{}'s link: faults for {n} steps: {f:?}",
                        self.hosts[l].name
                    ));
                    self.links[l].faulty.set_faults(f.clone());
                    self.links[l].fault_steps = n;
                }
            }
            67..=68 => {
                let n = 1 + self.rng.below(5) as u32;
                for l in self.some_links(h) {
                    self.note(format!(
                        "{}'s link is down for {n} steps",
                        self.hosts[l].name
                    ));
                    self.links[l].faulty.set_outage(true);
                    self.links[l].outage_steps = n;
                }
            }
            69..=71 => self.cut(holder),
            72..=74 => self.pause(holder),
            75..=77 => self.skew(holder),
            78..=79 => self.race(holder),
            80..=81 => self.race_claim(holder),
            82..=83 => self.stampede(),
            84..=85 => self.restart(h),
            86..=89 => {
                self.heal_links();
                self.heal_hosts();
            }
            _ => {
                let ms = 1 + self.rng.below(TTL_MS / 4);
                self.note(format!("time moves on {ms} ms"));
                self.advance(&[0, 1], ms);
            }
        }
        // Acknowledgements that arrived meanwhile.
        self.settle_all(Duration::ZERO);
        if self.verify_every > 0 && self.step.is_multiple_of(self.verify_every) {
            self.check_bucket();
        }
    }

    /// Invariant 5 as the run goes: every epoch's log in the bucket (read
    /// without faults) is whole from its first snapshot on. An epoch with
    /// no snapshot yet (its base in flight, or its owner broke first) is
    /// allowed.
    fn check_bucket(&mut self) {
        let Some(st) = self.hosts.iter().find_map(|h| h.store.as_ref()) else {
            return;
        };
        let id = st.id_from_name(OBJ).unwrap();
        let clean = Bucket::from_store(self.inner.clone(), self.layout.clone());
        let rep = self
            .rt
            .block_on(async move { amber::pitr::verify_object(&clean, &id).await });
        let rep = match rep {
            Ok(r) => r,
            // Only the object's first step may find nothing at all.
            Err(_) => return,
        };
        let bad: Vec<String> = rep
            .epochs
            .iter()
            .flat_map(|e| {
                e.problems
                    .iter()
                    .filter(|p| !(e.snapshots == 0 && p.starts_with("no snapshot")))
                    .map(move |p| format!("epoch {}: {p}", e.epoch))
            })
            .collect();
        if !bad.is_empty() {
            self.fail(format!("invariant 5: the bucket's log has a hole: {bad:?}"));
        }
    }

    /// Heals everything, lets tickets settle, and opens the object on
    /// whichever host can take it. Returns that host.
    fn finish(&mut self) -> usize {
        self.step += 1;
        self.heal_links();
        self.heal_hosts();
        self.settle_all(Duration::from_secs(5));
        let stuck: Vec<_> = self
            .turns
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Pending(_)))
            .map(|t| t.keys.clone())
            .collect();
        if !stuck.is_empty() {
            self.fail(format!("tickets never settled after healing: {stuck:?}"));
        }
        for h in 0..2 {
            self.drop_handle(h, "end of run");
        }
        let first = self.rng.below(2) as usize;
        for attempt in 0..40 {
            for h in [first, Self::other(first)] {
                if self.open(h) {
                    return h;
                }
            }
            // The record may name an incarnation whose lease still runs.
            self.note(format!("final open, attempt {attempt}: time moves on"));
            self.advance(&[0, 1], TTL_MS / 4);
        }
        self.fail("no host could open the object after healing".into())
    }

    fn final_checks(&mut self, o: usize) {
        let hd = self.hosts[o].handle.as_mut().unwrap();
        let final_epoch = hd.epoch;
        let present: BTreeMap<String, Vec<u8>> = hd
            .obj
            .list(&ListOptions::prefix("k"))
            .unwrap_or_else(|e| panic!("seed {}: final list: {e}", self.seed))
            .into_iter()
            .collect();
        let hot = hd
            .obj
            .get(HOT)
            .unwrap_or_else(|e| panic!("seed {}: final get: {e}", self.seed));
        let mut expected = BTreeSet::new();
        for (i, t) in self.turns.iter().enumerate() {
            let there: Vec<bool> = t
                .keys
                .iter()
                .map(|&k| present.contains_key(&key(k)))
                .collect();
            for &k in &t.keys {
                expected.insert(key(k));
                if let Some(v) = present.get(&key(k)) {
                    if *v != val(k) {
                        self.fail(format!(
                            "key {} holds {:?}",
                            key(k),
                            String::from_utf8_lossy(v)
                        ));
                    }
                }
            }
            let all = there.iter().all(|&b| b);
            let none = there.iter().all(|&b| !b);
            if !all && !none {
                self.fail(format!(
                    "invariant 3: turn {:?} (#{i}) is only partly there: {there:?}",
                    t.keys
                ));
            }
            match &t.outcome {
                Outcome::Acked if !all => self.fail(format!(
                    "invariant 1 (final): acknowledged turn {:?} by {} (epoch {}, era {}, step {}) \
                     is missing from the final state (owner {}, epoch {final_epoch})",
                    t.keys,
                    self.hosts[t.host].name,
                    t.epoch,
                    t.era,
                    t.step,
                    self.hosts[o].name
                )),
                Outcome::Refused(k) if all => self.fail(format!(
                    "invariant 3: turn {:?} was refused before its commit ({k:?}) yet is there",
                    t.keys
                )),
                Outcome::Failed(k) | Outcome::Unknown(k) if all => {
                    // Landed before the next owner listed the bucket, but
                    // its acknowledgement was refused (or lost): allowed.
                    self.stats.survived_unacked += 1;
                    self.stats.survived_fenced += (*k == ErrorKind::Fenced) as u64;
                }
                _ => {}
            }
        }
        if let Some(k) = present.keys().find(|k| !expected.contains(*k)) {
            self.fail(format!("invariant 3: key {k} was never written"));
        }
        // The state is one history: the hot key holds the newest turn
        // present (turns along the history the final owner inherited were
        // made in key order).
        let newest = self
            .turns
            .iter()
            .filter(|t| present.contains_key(&key(t.keys[0])))
            .map(|t| t.keys[0])
            .max();
        if hot != newest.map(hot_val) {
            let got = hot
                .as_ref()
                .map(|v| String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned());
            self.fail(format!(
                "invariant 3: the hot key holds {got:?}, but the newest turn present is {newest:?}"
            ));
        }
        // A last turn, so the final epoch has its base snapshot and a log.
        self.write(o, true);
        if !matches!(self.turns.last().unwrap().outcome, Outcome::Acked) {
            self.fail("the final owner's turn was not acknowledged on a healed bucket".into());
        }
        let final_seq = self.hosts[o].handle.as_ref().unwrap().obj.seq();
        // The same through a restore of the newest commit (what the next
        // owner would get) is covered by `verify` below: each epoch's log
        // must be whole, and the final one restorable up to the end.
        let rep = self.hosts[o]
            .store()
            .verify(OBJ)
            .unwrap_or_else(|e| panic!("seed {}: verify: {e}", self.seed));
        let mut bad = Vec::new();
        for ep in &rep.epochs {
            for p in &ep.problems {
                // An owner that broke before its base snapshot landed left
                // an epoch with nothing restorable: nothing in it was ever
                // acknowledged (acknowledgements wait for that snapshot).
                let empty = ep.snapshots == 0 && p.starts_with("no snapshot");
                if !empty || ep.epoch == final_epoch {
                    bad.push(format!("epoch {}: {p}", ep.epoch));
                }
            }
        }
        let fin = rep.epochs.iter().find(|e| e.epoch == final_epoch);
        match fin.and_then(|e| e.restorable) {
            Some((_, last)) if last == amber::pitr::Bookmark::new(final_epoch, final_seq) => {}
            r => bad.push(format!(
                "final epoch {final_epoch} restorable {r:?}, expected up to seq {final_seq}"
            )),
        }
        if !bad.is_empty() {
            self.fail(format!("invariant 5: verify: {bad:?}\n{rep:#?}"));
        }
        // The record, read from the bucket itself, names the final owner.
        let id = self.hosts[o].store().id_from_name(OBJ).unwrap();
        let path = self.layout.owner(&id);
        let inner = self.inner.clone();
        let rec = self
            .rt
            .block_on(async move { inner.get(&path).await.unwrap().bytes().await.unwrap() });
        let rec: serde_json::Value = serde_json::from_slice(&rec).unwrap();
        let inc = self.hosts[o].cluster().incarnation();
        if rec["host"].as_str() != Some(inc.as_str()) || rec["epoch"].as_u64() != Some(final_epoch)
        {
            self.fail(format!(
                "invariant 5: the ownership record {rec} does not name the final owner {inc} \
                 in epoch {final_epoch}"
            ));
        }
        let empty_epochs = rep.epochs.iter().filter(|e| e.snapshots == 0).count();
        self.stats.epochs += rep.epochs.len() as u64;
        self.stats.empty_epochs += empty_epochs as u64;
        self.stats.snapshots += rep.epochs.iter().map(|e| e.snapshots as u64).sum::<u64>();
        self.note(format!(
            "final: owner {}, epoch {final_epoch}, seq {final_seq}, {} keys, {} epochs ({} without \
             a snapshot)",
            self.hosts[o].name,
            present.len(),
            rep.epochs.len(),
            empty_epochs
        ));
    }
}

fn run_seed(seed: u64, steps: usize) -> Stats {
    let mut sim = Sim::new(seed);
    sim.note(format!(
        "start: a = {}, b = {}",
        sim.hosts[0].cluster().incarnation(),
        sim.hosts[1].cluster().incarnation()
    ));
    while sim.step < steps {
        sim.step += 1;
        let t = Instant::now();
        let before = sim.log.len();
        sim.step();
        if t.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "seed {seed}: step {} took {:.1?}:\n  {}",
                sim.step,
                t.elapsed(),
                sim.log[before.saturating_sub(1)..].join("\n  ")
            );
        }
    }
    let t = Instant::now();
    let o = sim.finish();
    sim.final_checks(o);
    if t.elapsed() > Duration::from_secs(2) {
        eprintln!("seed {seed}: the end took {:.1?}", t.elapsed());
    }
    sim.stats.faults = sim.links.iter().map(|l| l.faulty.injected().total()).sum();
    let s = sim.stats;
    // Each handle and store drops here, inside the seed: shipping loops of
    // broken handles end, and each host leaves the cluster.
    for h in 0..2 {
        sim.hosts[h].handle = None;
    }
    let t = Instant::now();
    drop(sim);
    if t.elapsed() > Duration::from_secs(2) {
        eprintln!("seed {seed}: dropping the stores took {:.1?}", t.elapsed());
    }
    s
}

#[test]
fn two_writers_fence_each_other_under_faults() {
    count_panics();
    let seeds = env_u64("AMBER_SIM_SEEDS", 20);
    let first = env_u64("AMBER_SIM_SEED", 1);
    let steps = env_u64("AMBER_SIM_STEPS", 200) as usize;
    let start = Instant::now();
    let mut total = Stats::default();
    for seed in first..first + seeds {
        let t = Instant::now();
        let s = run_seed(seed, steps);
        println!("seed {seed:>4}: {} | {:.1?}", s.line(), t.elapsed());
        total.add(&s);
    }
    println!(
        "total over {seeds} seeds: {} | {:.1?}",
        total.line(),
        start.elapsed()
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    if seeds < 10 {
        return; // a replay of a few seeds need not cover everything
    }
    assert!(total.acked > 0, "nothing was acknowledged: {total:?}");
    assert!(total.takeovers > 0, "no takeover happened: {total:?}");
    assert!(total.fenced > 0, "nothing was fenced: {total:?}");
    assert!(
        total.stale_fenced_by_record > 0 && total.record_fenced > 0,
        "no stale commit reached the record check: {total:?}"
    );
    assert!(total.races_held > 0, "no race held a request: {total:?}");
    assert!(total.faults > 0, "no fault was injected: {total:?}");
}

/// Waits until `h`'s lease is valid (its renewer rejoined after a lapse).
fn wait_lease(h: &Host) {
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

/// Retention against takeovers. A claim whose base snapshot never lands
/// leaves an epoch with a manifest and nothing else; the next claim then
/// rebuilds from the epoch before it (`History::latest` skips empty ones).
/// Retention must keep that epoch. On `scale` at 7f8a74a it did not:
/// `gc` counts the earlier epoch as ended when the empty one's manifest was
/// written and deletes it once that is past the window, and the next
/// takeover finds nothing to rebuild from and starts the object empty, so
/// an acknowledged write is lost. (The simulation's clocks never cross a
/// retention window, so this is a separate, deterministic scenario.)
#[test]
fn gc_keeps_what_the_next_takeover_rebuilds_from() {
    count_panics();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = KeyLayout::new("sim").unwrap();
    let links = [Link::new(&inner, 1), Link::new(&inner, 2)];
    let retention = Duration::from_secs(1);
    let bucket = |i: usize| {
        let link: Arc<dyn ObjectStore> = links[i].gate.clone();
        Bucket::from_store(link, layout.clone())
    };
    let a = open_host_with("a", &bucket(0), retention);
    let b = open_host_with("b", &bucket(1), retention);

    // a owns the object and acknowledges a write (epoch 1).
    let mut oa = a.store().open_object(OBJ).unwrap();
    oa.put("k", b"acked").unwrap();
    oa.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    let e1 = oa.epoch();
    drop(oa);

    // b's clock says a's lease lapsed: b takes the object (epoch 2), but
    // its base snapshot cannot be uploaded, and b drops the handle.
    b.clock.advance(TTL_MS + 1);
    wait_lease(&b);
    links[1].gate.refuse(GateOp::Put, "/snapshots/");
    let ob = b.store().open_object(OBJ).unwrap();
    let e2 = ob.epoch();
    assert!(e2 > e1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ob.is_broken() {
        assert!(
            Instant::now() < deadline,
            "b's snapshot upload never gave up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = ob.current_bookmark();
    drop(ob);
    links[1].gate.release();
    let h = b.store().history(OBJ).unwrap();
    let ep2 = h.epoch(e2).expect("epoch 2 has a manifest");
    assert!(
        ep2.snapshots.is_empty(),
        "epoch 2 got no base snapshot: {t:?}"
    );

    // The object sits idle past the retention window (plus GC's grace);
    // both hosts rejoin; an operator runs retention.
    let idle = (retention + amber::pitr::gc::GC_GRACE).as_millis() as u64 + 1000;
    for h in [&a, &b] {
        h.clock.advance(idle);
    }
    b.clock.set(a.clock.now());
    wait_lease(&a);
    wait_lease(&b);
    let rep = a.store().gc(OBJ).unwrap();
    println!("gc: {rep:?}");
    for ep in &a.store().history(OBJ).unwrap().epochs {
        println!("after gc: {ep:?}");
    }

    // The next owner must still have the acknowledged write.
    let mut o = match a.store().open_object(OBJ) {
        Ok(o) => o,
        Err(e) => {
            println!("a: {e}");
            b.store().open_object(OBJ).unwrap()
        }
    };
    println!("reopened in epoch {}, seq {}", o.epoch(), o.seq());
    assert_eq!(
        o.get("k").unwrap().as_deref(),
        Some(&b"acked"[..]),
        "an acknowledged write is gone after gc + takeover (gc deleted {rep:?})"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

/// A point-in-time restore scheduled on one host (`restore_on_next_open`)
/// is a marker in that host's data directory. If the object changes hands
/// before that host reopens it, the other host's acknowledged writes come
/// after the bookmark; the marker must not roll them back when the first
/// host later takes the object again.
#[test]
fn a_stale_restore_marker_does_not_undo_another_hosts_writes() {
    count_panics();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = KeyLayout::new("sim").unwrap();
    let links = [Link::new(&inner, 1), Link::new(&inner, 2)];
    let bucket = |i: usize| {
        let link: Arc<dyn ObjectStore> = links[i].gate.clone();
        Bucket::from_store(link, layout.clone())
    };
    let a = open_host("a", &bucket(0));
    let b = open_host("b", &bucket(1));

    // a writes, schedules a restore to where it is now, and closes.
    let mut oa = a.store().open_object(OBJ).unwrap();
    oa.put("k1", b"one").unwrap();
    oa.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    let mark = oa.current_bookmark();
    oa.restore_on_next_open(mark).unwrap();
    drop(oa);

    // b's clock says a's lease lapsed: b takes the object and a write of
    // b's is acknowledged.
    b.clock.advance(TTL_MS + 1);
    wait_lease(&b);
    let mut ob = b.store().open_object(OBJ).unwrap();
    assert_eq!(ob.get("k1").unwrap().as_deref(), Some(&b"one"[..]));
    ob.put("k2", b"two").unwrap();
    ob.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    drop(ob);

    // Later a's clock says b's lease lapsed, and a takes the object back.
    a.clock.set(b.clock.now() + TTL_MS + 1);
    wait_lease(&a);
    let mut o = a.store().open_object(OBJ).unwrap();
    println!(
        "a reopened in epoch {}, seq {} (restore target was {mark:?})",
        o.epoch(),
        o.seq()
    );
    assert_eq!(
        o.get("k2").unwrap().as_deref(),
        Some(&b"two"[..]),
        "b's acknowledged write was rolled back by a's stale restore marker"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
