//! Namespaces (one per class), stubs (the way in to one object) and
//! pending replies.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::class::{Request, Response};
use super::id::Id;
use super::slot::{Event, ReplyTo};
use super::Inner;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;

thread_local! {
    /// The object whose turn runs on this thread, if any.
    pub(crate) static CURRENT: Cell<Option<ObjectId>> = const { Cell::new(None) };
}

/// The ids and stubs of one object class.
#[derive(Clone)]
pub struct Namespace {
    inner: Arc<Inner>,
    class: Arc<str>,
}

impl Namespace {
    pub(crate) fn new(inner: Arc<Inner>, class: &str) -> Namespace {
        Namespace {
            inner,
            class: class.into(),
        }
    }

    pub fn class(&self) -> &str {
        &self.class
    }

    /// The id for `name`: a keyed hash, stable for this store, so the same
    /// name always reaches the same object.
    pub fn id_from_name(&self, name: &str) -> Result<Id> {
        let id = Id::named(&self.inner.store, &self.class, name)?;
        self.inner.remember_name(&id);
        Ok(id)
    }

    /// Up to `limit` ids of this namespace's stored objects, named and
    /// unique, after `start_after` (the last id of the previous page), in
    /// the order of their store names. Read from the store catalog, so
    /// listing does not open objects.
    pub fn list_ids(&self, start_after: Option<&Id>, limit: usize) -> Result<Vec<Id>> {
        if limit == 0 {
            return Err(Error::invalid("limit must be at least 1"));
        }
        let store = &self.inner.store;
        let mut after = start_after.map(Id::store_name).unwrap_or_default();
        let mut out = Vec::new();
        // Store names are `class:name` and `class#hex`; other classes may
        // share the prefix and are skipped.
        while out.len() < limit {
            let opts = crate::store::ObjectListOptions::new()
                .prefix(self.class.to_string())
                .start_after(after.clone())
                .limit(crate::store::DEFAULT_PAGE);
            let page = store.list_objects_page(&opts)?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.name.clone();
            for o in page {
                if let Some(id) = Id::from_store_name(store, &o.name) {
                    if id.class() == &*self.class && out.len() < limit {
                        out.push(id);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A new random id, unguessable and never equal to a named one.
    pub fn new_unique_id(&self) -> Result<Id> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| Error::new(ErrorKind::Io, format!("no randomness for an id: {e}")))?;
        Id::unique(&self.inner.store, &self.class, random)
    }

    /// Parses an id's string form. Unique ids are checked by their MAC;
    /// named ids must be known to this runtime (made with `id_from_name`
    /// since start, or stored on disk). Ids of other classes, other stores,
    /// or malformed strings are `InvalidInput`.
    pub fn id_from_string(&self, s: &str) -> Result<Id> {
        let raw = ObjectId::from_hex(s)?;
        if let Some(id) = Id::check_unique(&self.inner.store, &self.class, raw)? {
            return Ok(id);
        }
        match self.inner.lookup_name(&raw) {
            Some(id) if id.class() == &*self.class => Ok(id),
            _ => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("`{s}` is not an id of namespace `{}`", self.class),
            )),
        }
    }

    /// A stub for the object `id`. The object is activated by its first
    /// event, not by this call.
    pub fn get(&self, id: &Id) -> Result<Stub> {
        if id.class() != &*self.class {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "id belongs to namespace `{}`, not `{}`",
                    id.class(),
                    self.class
                ),
            ));
        }
        Ok(Stub {
            inner: self.inner.clone(),
            id: id.clone(),
        })
    }
}

/// The way in to one object. Every call is a message to its mailbox.
#[derive(Clone)]
pub struct Stub {
    pub(crate) inner: Arc<Inner>,
    pub(crate) id: Id,
}

impl Stub {
    pub fn id(&self) -> &Id {
        &self.id
    }

    /// Sends a request. The reply resolves once the turn's writes are
    /// durable (or with the error that replaced it).
    pub fn fetch(&self, req: Request) -> Pending<Response> {
        let (tx, rx) = oneshot::channel();
        match self
            .inner
            .enqueue(&self.id, Event::Fetch { req, reply: tx })
        {
            Ok(()) => Pending::new(rx, Some(self.id.raw())),
            Err(e) => Pending::failed(e),
        }
    }

    /// Calls RPC `method` with `body`.
    pub fn call(&self, method: &str, body: impl Into<Vec<u8>>) -> Pending<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        let ev = Event::Call {
            method: method.to_owned(),
            body: body.into(),
            reply: ReplyTo::Caller(tx),
        };
        match self.inner.enqueue(&self.id, ev) {
            Ok(()) => Pending::new(rx, Some(self.id.raw())),
            Err(e) => Pending::failed(e),
        }
    }
}

/// A reply on its way. Await it (any executor), or block with `wait`.
pub struct Pending<T> {
    state: PendingState<T>,
    target: Option<ObjectId>,
}

enum PendingState<T> {
    Waiting(oneshot::Receiver<Result<T>>),
    Failed(Option<Error>),
}

impl<T> Pending<T> {
    pub(crate) fn new(rx: oneshot::Receiver<Result<T>>, target: Option<ObjectId>) -> Self {
        Pending {
            state: PendingState::Waiting(rx),
            target,
        }
    }

    pub(crate) fn failed(e: Error) -> Self {
        Pending {
            state: PendingState::Failed(Some(e)),
            target: None,
        }
    }

    /// Blocks until the reply arrives. Waiting, inside a handler, on a call
    /// to the same object would deadlock (the reply needs this very turn to
    /// end), so it fails at once with `InvalidInput`: use `Ctx::call`,
    /// whose reply arrives as an event.
    pub fn wait(self) -> Result<T> {
        self.wait_until(None)
    }

    pub fn wait_timeout(self, timeout: Duration) -> Result<T> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(mut self, deadline: Option<Instant>) -> Result<T> {
        if self.target.is_some() && CURRENT.with(|c| c.get()) == self.target {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "an object cannot block on a call to itself; use Ctx::call, whose reply arrives as an event",
            ));
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = Pin::new(&mut self).poll(&mut cx) {
                return v;
            }
            match deadline {
                None => std::thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(Error::new(ErrorKind::Timeout, "no reply in time"));
                    }
                    std::thread::park_timeout(d - now);
                }
            }
        }
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.get_mut().state {
            PendingState::Failed(e) => Poll::Ready(Err(e
                .take()
                .unwrap_or_else(|| Error::new(ErrorKind::Closed, "reply already taken")))),
            PendingState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready(Err(Error::new(
                    ErrorKind::Closed,
                    "the object dropped the event (handler panicked, or the runtime stopped)",
                ))),
            },
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}
