//! Durability tickets. A ticket names one commit of one object and resolves
//! when that commit, and every commit before it, is durable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::watermark::Watermark;
use crate::error::{Error, ErrorKind, Result};

/// A claim on a commit's durability. Cheap to clone; waiting does not
/// consume it. It can be waited on blocking, polled, awaited as a
/// `Future` (no runtime needed), or given a callback.
#[derive(Clone)]
pub struct Ticket {
    seq: u64,
    mark: Arc<Watermark>,
}

impl Ticket {
    pub(crate) fn new(seq: u64, mark: Arc<Watermark>) -> Self {
        Ticket { seq, mark }
    }

    /// The commit's sequence number (0 for "nothing written yet").
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `None` while pending; `Some(Ok(seq))` once durable; `Some(Err)` if
    /// the object broke before the commit became durable.
    pub fn poll_done(&self) -> Option<Result<u64>> {
        let st = self.mark.lock();
        Watermark::settled(&st, self.seq)
    }

    pub fn is_done(&self) -> bool {
        self.poll_done().is_some()
    }

    /// Blocks until the commit is durable.
    pub fn wait(&self) -> Result<u64> {
        let mut st = self.mark.lock();
        loop {
            if let Some(r) = Watermark::settled(&st, self.seq) {
                return r;
            }
            st = self.mark.wait_on(st);
        }
    }

    /// Blocks at most `timeout`. A timeout is `ErrorKind::Timeout`; the
    /// commit may still become durable later.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut st = self.mark.lock();
        loop {
            if let Some(r) = Watermark::settled(&st, self.seq) {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("commit {} not durable within {timeout:?}", self.seq),
                ));
            }
            st = self.mark.wait_timeout_on(st, deadline - now);
        }
    }

    /// Runs `cb` once the ticket settles: at once on this thread if it
    /// already has, otherwise on the amber thread that settles it (a syncer
    /// thread at `Local` durability, a shipper thread at `Remote`). The
    /// callback must not block for long, and must not call back into the
    /// object that produced the ticket.
    pub fn on_complete(&self, cb: impl FnOnce(Result<u64>) + Send + 'static) {
        let mut st = self.mark.lock();
        if let Some(r) = Watermark::settled(&st, self.seq) {
            drop(st);
            cb(r);
            return;
        }
        Watermark::register_callback(&mut st, self.seq, Box::new(cb));
    }
}

impl Future for Ticket {
    type Output = Result<u64>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.mark.lock();
        if let Some(r) = Watermark::settled(&st, self.seq) {
            return Poll::Ready(r);
        }
        Watermark::register_waker(&mut st, self.seq, cx.waker());
        Poll::Pending
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("seq", &self.seq)
            .field("done", &self.is_done())
            .finish()
    }
}
