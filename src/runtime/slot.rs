//! A slot: everything the runtime keeps for one object id, whether or not
//! its instance is live. The mailbox, the live instance (if any), its
//! sockets, and the bookkeeping eviction needs.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::class::{ObjectClass, Request, Response};
use super::gate::OutputGate;
use super::id::Id;
use super::websocket::{Sockets, WsMessage};
use super::Factory;
use crate::error::Result;
use crate::object::Object;

pub(crate) type Replier<T> = oneshot::Sender<Result<T>>;

/// Where the reply to an RPC call goes.
pub(crate) enum ReplyTo {
    /// An outside caller waiting on a `Pending`.
    Caller(Replier<Vec<u8>>),
    /// Another object (or the same one): delivered as an `RpcReply` event.
    Object(Id, u64),
    /// A one-way message.
    Nobody,
}

pub(crate) enum Event {
    Fetch {
        req: Request,
        reply: Replier<Response>,
    },
    Call {
        method: String,
        body: Vec<u8>,
        reply: ReplyTo,
    },
    RpcReply {
        token: u64,
        result: Result<Vec<u8>>,
    },
    Alarm {
        name: String,
        time_ms: u64,
        retry: u32,
    },
    WsMessage {
        socket: u64,
        msg: WsMessage,
    },
    WsClose {
        socket: u64,
        code: u16,
        reason: String,
    },
    WsError {
        socket: u64,
        error: String,
    },
    /// Close the instance if nothing happened since `activity` was read
    /// (or always, with `force`).
    Evict {
        activity: u64,
        force: bool,
        done: Option<Replier<()>>,
    },
    /// Close the instance and delete the object for good
    /// (`Store::delete_object`); replies whether there was one.
    Delete {
        history: crate::store::BucketHistory,
        done: Replier<bool>,
    },
}

impl Event {
    /// Events from outside callers count against the mailbox capacity;
    /// the runtime's own (replies, alarms, closes, evictions) do not, so
    /// they are never lost to backpressure.
    pub(crate) fn is_external(&self) -> bool {
        matches!(
            self,
            Event::Fetch { .. } | Event::Call { .. } | Event::WsMessage { .. }
        )
    }
}

pub(crate) struct Mailbox {
    pub(crate) queue: VecDeque<Event>,
    /// External events in `queue`.
    pub(crate) external: usize,
    /// The slot is in the ready queue or a worker is running it.
    pub(crate) scheduled: bool,
    /// Removed from the runtime's map: enqueue on a fresh slot instead.
    pub(crate) dead: bool,
}

pub(crate) struct Instance {
    // The class drops first: it may hold nothing of the object, but its
    // own Drop should still see a live store.
    pub(crate) class: Box<dyn ObjectClass>,
    pub(crate) obj: Object,
}

pub(crate) struct Slot {
    pub(crate) id: Id,
    pub(crate) factory: Factory,
    pub(crate) mailbox: Mutex<Mailbox>,
    /// Touched only by the worker that holds `scheduled`.
    pub(crate) instance: Mutex<Option<Instance>>,
    pub(crate) sockets: Mutex<Sockets>,
    /// Bumped by every non-eviction event; eviction checks it did not move.
    pub(crate) activity: AtomicU64,
    /// Clock time of the last event, for idle timeouts and LRU.
    pub(crate) last_active_ms: AtomicU64,
    pub(crate) live: AtomicBool,
    pub(crate) evict_pending: AtomicBool,
    /// Estimated bytes the live instance holds.
    pub(crate) mem: AtomicUsize,
    pub(crate) gate: OutputGate,
}

impl Slot {
    pub(crate) fn new(id: Id, factory: Factory, now_ms: u64) -> Slot {
        Slot {
            id,
            factory,
            mailbox: Mutex::new(Mailbox {
                queue: VecDeque::new(),
                external: 0,
                scheduled: false,
                dead: false,
            }),
            instance: Mutex::new(None),
            sockets: Mutex::new(Sockets::default()),
            activity: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(now_ms),
            live: AtomicBool::new(false),
            evict_pending: AtomicBool::new(false),
            mem: AtomicUsize::new(0),
            gate: OutputGate::default(),
        }
    }

    pub(crate) fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        lock(&self.mailbox)
    }

    pub(crate) fn sockets(&self) -> MutexGuard<'_, Sockets> {
        lock(&self.sockets)
    }

    pub(crate) fn has_sockets(&self) -> bool {
        !self.sockets().open.is_empty()
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.activity.fetch_add(1, Ordering::AcqRel);
        self.last_active_ms.fetch_max(now_ms, Ordering::AcqRel);
    }
}

/// Locks, ignoring poison: a panicking handler is caught and its instance
/// reset, and the data behind these locks stays consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
