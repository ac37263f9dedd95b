//! The object runtime: named objects with one live instance each, events
//! run one at a time as turns on a bounded worker pool, an output gate that
//! holds replies until their writes are durable, alarms, hibernation and
//! eviction, RPC through stubs, and hibernatable WebSockets.
//!
//! ```no_run
//! use amber::runtime::{Ctx, ObjectClass, Request, Response, Runtime};
//! use amber::{Config, Store};
//!
//! struct Hello;
//! impl ObjectClass for Hello {
//!     fn fetch(&mut self, ctx: &mut Ctx<'_>, _req: Request) -> amber::Result<Response> {
//!         let n = ctx.storage().get("n")?.map_or(0, |v| v[0]) + 1;
//!         ctx.storage().put("n", &[n])?;
//!         Ok(Response::ok(format!("hello #{n}")))
//!     }
//! }
//!
//! let store = Store::open(Config::new("./amber-data"))?;
//! let rt = Runtime::builder(store).class("hello", || Hello).start()?;
//! let ns = rt.namespace("hello")?;
//! let stub = ns.get(&ns.id_from_name("world")?)?;
//! let reply = stub.fetch(Request::new("GET", "/")).wait()?; // durable
//! # Ok::<(), amber::Error>(())
//! ```
//!
//! Layout: `class.rs` (the trait users implement), `ctx.rs` (what a handler
//! can do), `id.rs`, `namespace.rs` (namespaces, stubs, pending replies),
//! `slot.rs` (per-object state and mailbox), `executor.rs` (workers, turns,
//! output gate), `alarms.rs` (scheduler), `housekeeping.rs` (idle and
//! memory eviction), `websocket.rs`, `metrics.rs`.

mod alarms;
mod class;
mod ctx;
mod executor;
mod gate;
mod housekeeping;
mod id;
mod metrics;
mod namespace;
mod slot;
mod websocket;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{unbounded, Sender};

pub use class::{AlarmInfo, ObjectClass, Request, Response};
pub use ctx::Ctx;
pub use id::{valid_class, Id};
pub use metrics::Metrics;
pub use namespace::{Namespace, Pending, Stub};
pub use websocket::{
    AcceptedSocket, WebSocket, WsMessage, WsOut, MAX_ATTACHMENT_BYTES, MAX_TAGS, MAX_TAG_BYTES,
};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::store::Store;
use slot::{lock, Event, Slot};

/// Makes a fresh instance of a class.
pub(crate) type Factory = Arc<dyn Fn() -> Box<dyn ObjectClass> + Send + Sync>;

/// Called when a turn's ticket resolves, with the object's id, the
/// ticket's sequence number and the continuation that releases the turn's
/// held outputs. The default (no hook) releases at once. A hook may call
/// `release` later, from any thread: the object's outputs then wait exactly
/// as they would behind a slow fsync, which is how the tests observe the
/// output gate. It runs on whichever thread settled the ticket, so it must
/// not block.
pub type GateHook = Arc<dyn Fn(&Id, u64, Box<dyn FnOnce() + Send>) + Send + Sync>;

/// Runtime settings. `RuntimeConfig::default()` follows Durable Objects.
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Worker threads running turns (the pool is shared by all objects).
    /// Default: twice the cores, 4 to 32.
    pub workers: usize,
    /// Most external events (requests, calls, socket messages) waiting per
    /// object; beyond it callers get `ErrorKind::Overloaded`.
    pub mailbox_capacity: usize,
    /// Idle time after which an object without sockets is closed (DO: ~70 s).
    pub idle_timeout: Duration,
    /// Idle time after which an object with open sockets hibernates (DO:
    /// ~10 s). Its sockets stay open.
    pub hibernation_timeout: Duration,
    /// Estimated bytes all live instances may hold before the least
    /// recently used idle ones are closed.
    pub memory_budget_bytes: usize,
    /// Fixed estimate per live instance (SQLite connection, statement cache,
    /// class), added to its KV cache bytes.
    pub instance_overhead_bytes: usize,
    /// Most instances live at once; beyond it the least recently used idle
    /// ones are closed, as with the memory budget, at once rather than at
    /// the next housekeeping interval. Each live instance holds two file
    /// descriptors (its database and WAL). Default: an eighth of the open-files limit
    /// (`RLIMIT_NOFILE`, read from `/proc/self/limits`; 1,024 if unknown),
    /// at least 64.
    pub max_live_objects: usize,
    /// How often eviction checks run (real time).
    pub housekeeping_interval: Duration,
    /// First alarm retry delay; each retry doubles it (DO: 2 s).
    pub alarm_backoff_base_ms: u64,
    /// Retries after the first failed attempt (DO: 6).
    pub alarm_max_retries: u32,
    /// Longest the alarm scheduler sleeps between clock reads (real time).
    /// With a `ManualClock`, this is how soon an advanced clock is noticed.
    pub alarm_poll_interval: Duration,
    /// Seed of the jitter RNG; `None` seeds from the OS.
    pub rng_seed: Option<u64>,
    pub gate_hook: Option<GateHook>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            // Twice the cores: a worker blocks while an object opens (a new
            // object's files are fsync'd) or closes (it waits for
            // durability), and CPU-bound turns are short.
            workers: std::thread::available_parallelism()
                .map(|n| 2 * n.get())
                .unwrap_or(4)
                .clamp(4, 32),
            mailbox_capacity: 1024,
            idle_timeout: Duration::from_secs(70),
            hibernation_timeout: Duration::from_secs(10),
            memory_budget_bytes: 512 << 20,
            instance_overhead_bytes: 64 << 10,
            max_live_objects: default_max_live(),
            housekeeping_interval: Duration::from_millis(500),
            alarm_backoff_base_ms: 2000,
            alarm_max_retries: 6,
            alarm_poll_interval: Duration::from_millis(250),
            rng_seed: None,
            gate_hook: None,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) cfg: RuntimeConfig,
    pub(crate) clock: Arc<dyn Clock>,
    classes: HashMap<String, Factory>,
    slots: Mutex<HashMap<Id, Arc<Slot>>>,
    ready: Sender<Option<Arc<Slot>>>,
    /// Named ids seen, for `id_from_string`.
    names: Mutex<HashMap<ObjectId, Id>>,
    pub(crate) alarms: alarms::Scheduler,
    pub(crate) metrics: Metrics,
    /// Instances live now (`Slot::live` set).
    live_count: AtomicUsize,
    /// Set when `live_count` passed `max_live_objects`: housekeeping
    /// sweeps at its next step.
    pub(crate) sweep_now: AtomicBool,
    closing: AtomicBool,
    next_socket: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Builds a runtime: register classes, then `start`.
pub struct RuntimeBuilder {
    store: Store,
    cfg: RuntimeConfig,
    classes: Vec<(String, Factory)>,
}

impl RuntimeBuilder {
    pub fn config(mut self, cfg: RuntimeConfig) -> Self {
        self.cfg = cfg;
        self
    }

    /// Registers class `name` (1-64 characters of `[a-z0-9_-]`).
    pub fn class<C: ObjectClass>(
        mut self,
        name: &str,
        make: impl Fn() -> C + Send + Sync + 'static,
    ) -> Self {
        self.classes.push((
            name.to_owned(),
            Arc::new(move || Box::new(make()) as Box<dyn ObjectClass>),
        ));
        self
    }

    /// Starts the workers, the alarm scheduler and housekeeping. Scans the
    /// store for every object of a registered class and indexes its alarms,
    /// so alarms set before a restart fire.
    pub fn start(self) -> Result<Runtime> {
        let mut classes = HashMap::new();
        for (name, f) in self.classes {
            id::check_class(&name)?;
            if classes.insert(name.clone(), f).is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("class `{name}` is registered twice"),
                ));
            }
        }
        if self.cfg.workers == 0 || self.cfg.mailbox_capacity == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "workers and mailbox_capacity must be at least 1",
            ));
        }
        let clock = self.store.config().clock.clone();
        let (tx, rx) = unbounded();
        let inner = Arc::new(Inner {
            alarms: alarms::Scheduler::new(&self.cfg, clock.clone()),
            store: self.store,
            cfg: self.cfg,
            clock,
            classes,
            slots: Mutex::new(HashMap::new()),
            ready: tx,
            names: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            live_count: AtomicUsize::new(0),
            sweep_now: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            next_socket: AtomicU64::new(1),
            threads: Mutex::new(Vec::new()),
        });
        alarms::index_store(&inner)?;
        let mut threads = Vec::new();
        for i in 0..inner.cfg.workers {
            let (inner, rx) = (inner.clone(), rx.clone());
            threads.push(spawn(format!("amber-worker-{i}"), move || {
                executor::worker(inner, rx)
            })?);
        }
        let a = inner.clone();
        threads.push(spawn("amber-alarms".into(), move || alarms::run(a))?);
        let h = inner.clone();
        threads.push(spawn("amber-housekeeping".into(), move || {
            housekeeping::run(h)
        })?);
        *lock(&inner.threads) = threads;
        Ok(Runtime {
            handle: Arc::new(Handle { inner }),
        })
    }
}

fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(|e| Error::new(ErrorKind::Io, format!("spawn a runtime thread: {e}")))
}

/// A running runtime. Cheap to clone; the last clone to drop shuts it down.
#[derive(Clone)]
pub struct Runtime {
    handle: Arc<Handle>,
}

struct Handle {
    inner: Arc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.shutdown();
    }
}

impl Runtime {
    pub fn builder(store: Store) -> RuntimeBuilder {
        RuntimeBuilder {
            store,
            cfg: RuntimeConfig::default(),
            classes: Vec::new(),
        }
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }

    pub fn store(&self) -> &Store {
        &self.inner().store
    }

    /// The namespace of a registered class.
    pub fn namespace(&self, class: &str) -> Result<Namespace> {
        self.inner().namespace(class)
    }

    /// Registered class names, sorted.
    pub fn classes(&self) -> Vec<String> {
        let mut v: Vec<_> = self.inner().classes.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner().metrics
    }

    /// Metrics in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let live = lock(&self.inner().slots)
            .values()
            .filter(|s| s.live.load(Ordering::Acquire))
            .count();
        self.inner()
            .metrics
            .render(live, self.inner().store.journal_stats())
    }

    /// True while the object's instance is in memory (not hibernated).
    pub fn is_live(&self, id: &Id) -> bool {
        lock(&self.inner().slots)
            .get(id)
            .is_some_and(|s| s.live.load(Ordering::Acquire))
    }

    /// Number of live instances.
    pub fn live_objects(&self) -> usize {
        lock(&self.inner().slots)
            .values()
            .filter(|s| s.live.load(Ordering::Acquire))
            .count()
    }

    /// Closes the object's instance now, after the events already queued.
    /// Its sockets stay open. Resolves once it is closed.
    pub fn hibernate(&self, id: &Id) -> Pending<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ev = Event::Evict {
            activity: 0,
            force: true,
            done: Some(tx),
        };
        match self.inner().enqueue(id, ev) {
            Ok(()) => Pending::new(rx, None),
            Err(e) => Pending::failed(e),
        }
    }

    /// Deletes the object `id` for good, after the events already queued:
    /// its instance closes, its alarms are dropped, and the store deletes
    /// it (`Store::delete_object`: local files now, bucket history as
    /// `history` says). Resolves to whether there was such an object. An
    /// event that arrives later starts a fresh object under the same id.
    /// Its WebSockets are not closed.
    pub fn delete(&self, id: &Id, history: crate::store::BucketHistory) -> Pending<bool> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ev = Event::Delete { history, done: tx };
        match self.inner().enqueue(id, ev) {
            Ok(()) => Pending::new(rx, None),
            Err(e) => Pending::failed(e),
        }
    }

    /// When the scheduler will next deliver alarm `name` of `id` (clock
    /// ms), and how many retries it has had; `None` if it is not indexed.
    pub fn alarm_schedule(&self, id: &Id, name: &str) -> Option<(u64, u32)> {
        self.inner().alarms.next_attempt(id, name)
    }

    /// Makes the alarm scheduler read the clock now (useful after moving a
    /// `ManualClock`).
    pub fn poke_alarms(&self) {
        self.inner().alarms.poke();
    }

    /// A client message on an accepted socket. Answered by the runtime if it
    /// matches the object's auto-response (the instance is not woken);
    /// otherwise delivered to `websocket_message`.
    pub fn websocket_message(&self, id: &Id, socket: &WebSocket, msg: WsMessage) -> Result<()> {
        let inner = self.inner();
        if let WsMessage::Text(t) = &msg {
            let slot = inner.slot(id)?;
            let answered = slot
                .sockets()
                .try_auto_respond(socket.id(), t, inner.clock.now_ms());
            if answered {
                inner.metrics.auto_responses.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        inner.enqueue(
            id,
            Event::WsMessage {
                socket: socket.id(),
                msg,
            },
        )
    }

    /// The client closed the socket (or the connection dropped).
    pub fn websocket_closed(&self, id: &Id, socket: &WebSocket, code: u16, reason: &str) {
        let _ = self.inner().enqueue(
            id,
            Event::WsClose {
                socket: socket.id(),
                code,
                reason: reason.to_owned(),
            },
        );
    }

    /// The connection failed.
    pub fn websocket_error(&self, id: &Id, socket: &WebSocket, error: &str) {
        let _ = self.inner().enqueue(
            id,
            Event::WsError {
                socket: socket.id(),
                error: error.to_owned(),
            },
        );
    }

    /// Sends a close frame to every open socket of every object; returns
    /// how many. Used by the host's graceful shutdown.
    pub fn close_all_websockets(&self, code: u16, reason: &str) -> usize {
        let mut n = 0;
        for slot in self.inner().all_slots() {
            let sockets = slot.sockets();
            for id in sockets.open.keys() {
                if let Some(tx) = sockets.sender(*id) {
                    n += usize::from(tx.send(WsOut::Close(code, reason.to_owned())).is_ok());
                }
            }
        }
        n
    }

    /// Stops taking events, finishes the queued ones, closes every instance
    /// (waiting until its writes are durable) and joins the threads.
    /// Idempotent; also runs when the last handle drops.
    pub fn shutdown(&self) {
        self.inner().shutdown();
    }
}

impl Inner {
    pub(crate) fn namespace(self: &Arc<Self>, class: &str) -> Result<Namespace> {
        if !self.classes.contains_key(class) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("no object class `{class}` is registered"),
            ));
        }
        Ok(Namespace::new(self.clone(), class))
    }

    /// Marks `slot` live or not, keeping the count; past
    /// `max_live_objects`, asks housekeeping to sweep now.
    pub(crate) fn set_live(&self, slot: &slot::Slot, live: bool) {
        if slot.live.swap(live, Ordering::AcqRel) == live {
            return;
        }
        if live {
            let n = self.live_count.fetch_add(1, Ordering::AcqRel) + 1;
            if n > self.cfg.max_live_objects {
                self.sweep_now.store(true, Ordering::Release);
            }
        } else {
            self.live_count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn remember_name(&self, id: &Id) {
        lock(&self.names)
            .entry(id.raw())
            .or_insert_with(|| id.clone());
    }

    /// The named id whose raw id is `raw`: made since start, or in the
    /// store catalog.
    pub(crate) fn lookup_name(&self, raw: &ObjectId) -> Option<Id> {
        if let Some(id) = lock(&self.names).get(raw).cloned() {
            return Some(id);
        }
        let entry = self.store.catalog().get(raw).ok().flatten()?;
        let id = Id::from_store_name(&self.store, &entry.name)?;
        (id.raw() == *raw).then_some(id)
    }

    pub(crate) fn next_socket_id(&self) -> u64 {
        self.next_socket.fetch_add(1, Ordering::Relaxed)
    }

    /// The slot of `id`, created if needed.
    pub(crate) fn slot(&self, id: &Id) -> Result<Arc<Slot>> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(id) {
            return Ok(s.clone());
        }
        let factory = self.classes.get(id.class()).cloned().ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("no object class `{}` is registered", id.class()),
            )
        })?;
        let s = Arc::new(Slot::new(id.clone(), factory, self.clock.now_ms()));
        slots.insert(id.clone(), s.clone());
        Ok(s)
    }

    pub(crate) fn all_slots(&self) -> Vec<Arc<Slot>> {
        lock(&self.slots).values().cloned().collect()
    }

    /// Queues `ev` for `id`, waking a worker if the object is idle.
    pub(crate) fn enqueue(&self, id: &Id, ev: Event) -> Result<()> {
        if self.closing.load(Ordering::Acquire) && ev.is_external() {
            return Err(Error::new(
                ErrorKind::Closed,
                "the runtime is shutting down",
            ));
        }
        loop {
            let slot = self.slot(id)?;
            let mut mb = slot.mailbox();
            if mb.dead {
                continue;
            }
            if ev.is_external() {
                if mb.external >= self.cfg.mailbox_capacity {
                    self.metrics.overloaded.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::new(
                        ErrorKind::Overloaded,
                        format!(
                            "object {} has {} events waiting (mailbox_capacity)",
                            id, mb.external
                        ),
                    ));
                }
                mb.external += 1;
            }
            if !matches!(ev, Event::Evict { .. } | Event::Delete { .. }) {
                slot.touch(self.clock.now_ms());
            }
            mb.queue.push_back(ev);
            if !mb.scheduled {
                mb.scheduled = true;
                drop(mb);
                // The receivers live in `threads`; a failed send means they
                // are gone, and `shutdown` drains what is left.
                let _ = self.ready.send(Some(slot));
            }
            return Ok(());
        }
    }

    /// Drops the slot from the map if it holds nothing worth keeping.
    pub(crate) fn maybe_remove(&self, slot: &Arc<Slot>) {
        let mut slots = lock(&self.slots);
        let mut mb = slot.mailbox();
        let idle = mb.queue.is_empty()
            && !slot.live.load(Ordering::Acquire)
            && !slot.has_sockets()
            && !self.alarms.has_pending(&slot.id);
        if idle && !mb.dead {
            mb.dead = true;
            slots.remove(&slot.id);
        }
    }

    fn shutdown(&self) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!("runtime shutting down: finishing queued events");
        // No new alarm deliveries: they would reopen objects being closed.
        // Stored alarms stay stored and fire after the next start.
        self.alarms.stop();
        // Close every live instance after what is already queued.
        let mut waits = Vec::new();
        for slot in self.all_slots() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let ev = Event::Evict {
                activity: 0,
                force: true,
                done: Some(tx),
            };
            if self.enqueue(&slot.id, ev).is_ok() {
                waits.push(Pending::new(rx, None));
            }
        }
        for w in waits {
            let _ = w.wait_timeout(Duration::from_secs(30));
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for _ in 0..threads.len() {
            let _ = self.ready.send(None);
        }
        let me = std::thread::current().id();
        for t in threads {
            // A handler that drops the last runtime handle runs this on a
            // worker; that thread cannot join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        tracing::info!("runtime stopped");
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// An eighth of the soft open-files limit, at least 64: each live
/// instance holds about five descriptors, and sockets need the rest.
fn default_max_live() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024);
    (limit / 8).max(64)
}
