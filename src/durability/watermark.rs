//! One object's durability state: the last committed sequence number, the
//! last durable one, and who is waiting for which.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use crate::error::Error;

pub(crate) type Callback = Box<dyn FnOnce(Result<u64, Error>) + Send>;

#[derive(Default)]
pub(crate) struct State {
    /// Highest sequence number written to the WAL.
    pub(crate) committed: u64,
    /// Highest sequence number durable at the store's level. Every commit
    /// at or below it is durable: the watermark is contiguous.
    pub(crate) durable: u64,
    /// Highest sequence number fsync'd locally.
    pub(crate) local: u64,
    /// Highest sequence number in the bucket (contiguous).
    pub(crate) remote: u64,
    /// Set once; after it, nothing above `durable` ever resolves.
    pub(crate) error: Option<Error>,
    /// True while this object sits in the syncer's queue.
    pub(crate) queued: bool,
    wakers: Vec<(u64, Waker)>,
    callbacks: Vec<(u64, Callback)>,
}

/// Shared between an object, its tickets and the syncer.
pub(crate) struct Watermark {
    state: Mutex<State>,
    /// Tickets follow `remote` instead of `local`.
    remote_level: bool,
    cond: Condvar,
    /// Fast check for a latched failure, read on every object call.
    failed: AtomicBool,
    pub(crate) wal_path: PathBuf,
    pub(crate) dir_path: PathBuf,
    pub(crate) wal_file: OnceLock<File>,
    /// The object directory must be fsync'd once, after its files exist.
    pub(crate) dir_synced: AtomicBool,
}

impl Watermark {
    pub(crate) fn new(
        wal_path: PathBuf,
        dir_path: PathBuf,
        start_seq: u64,
        remote_seq: u64,
        remote_level: bool,
    ) -> Self {
        Watermark {
            state: Mutex::new(State {
                committed: start_seq,
                durable: if remote_level { remote_seq } else { start_seq },
                local: start_seq,
                remote: remote_seq,
                ..State::default()
            }),
            remote_level,
            cond: Condvar::new(),
            failed: AtomicBool::new(false),
            wal_path,
            dir_path,
            wal_file: OnceLock::new(),
            dir_synced: AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a waiter panicked; the state is plain
        // data that stays consistent, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    pub(crate) fn failure(&self) -> Option<Error> {
        if self.has_failed() {
            self.lock().error.clone()
        } else {
            None
        }
    }

    /// Records a successful local fsync up to `seq`.
    pub(crate) fn advance_local(&self, seq: u64) {
        let mut st = self.lock();
        st.local = st.local.max(seq);
        if !self.remote_level {
            self.raise(st, seq);
        }
    }

    /// Records that every commit up to `seq` is in the bucket.
    pub(crate) fn advance_remote(&self, seq: u64) {
        let mut st = self.lock();
        st.remote = st.remote.max(seq);
        if self.remote_level {
            self.raise(st, seq);
        } else {
            drop(st);
            // Someone may wait in `wait_remote` to checkpoint.
            self.cond.notify_all();
        }
    }

    /// Waits until every commit up to `seq` is in the bucket; false on
    /// timeout or failure.
    pub(crate) fn wait_remote(&self, seq: u64, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.lock();
        loop {
            if st.remote >= seq {
                return true;
            }
            let now = std::time::Instant::now();
            if st.error.is_some() || now >= deadline {
                return false;
            }
            st = self.wait_timeout_on(st, deadline - now);
        }
    }

    /// Raises the durable watermark and wakes whoever it satisfies.
    fn raise(&self, mut st: MutexGuard<'_, State>, seq: u64) {
        if seq <= st.durable || st.error.is_some() {
            return;
        }
        st.durable = seq;
        let ready_wakers: Vec<Waker> = extract(&mut st.wakers, seq);
        let ready_cbs: Vec<(u64, Callback)> = {
            let mut out = Vec::new();
            let mut i = 0;
            while i < st.callbacks.len() {
                if st.callbacks[i].0 <= seq {
                    out.push(st.callbacks.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            out
        };
        drop(st);
        self.cond.notify_all();
        for w in ready_wakers {
            w.wake();
        }
        for (s, cb) in ready_cbs {
            cb(Ok(s));
        }
    }

    /// Latches a failure: every pending and future ticket above the durable
    /// watermark fails with it.
    pub(crate) fn fail(&self, err: Error) {
        let mut st = self.lock();
        if st.error.is_some() {
            return;
        }
        st.error = Some(err.clone());
        self.failed.store(true, Ordering::Release);
        let wakers: Vec<Waker> = st.wakers.drain(..).map(|(_, w)| w).collect();
        let cbs: Vec<Callback> = st.callbacks.drain(..).map(|(_, c)| c).collect();
        drop(st);
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
        for cb in cbs {
            cb(Err(err.clone()));
        }
    }

    /// `Some(result)` once `seq` is settled.
    pub(crate) fn settled(st: &State, seq: u64) -> Option<Result<u64, Error>> {
        if seq <= st.durable {
            Some(Ok(seq))
        } else {
            st.error.as_ref().map(|e| Err(e.clone()))
        }
    }

    pub(crate) fn wait_on<'a>(&'a self, st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.cond.wait(st).unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn wait_timeout_on<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        dur: std::time::Duration,
    ) -> MutexGuard<'a, State> {
        self.cond
            .wait_timeout(st, dur)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    pub(crate) fn register_waker(st: &mut State, seq: u64, waker: &Waker) {
        if let Some(slot) = st
            .wakers
            .iter_mut()
            .find(|(s, w)| *s == seq && w.will_wake(waker))
        {
            slot.1 = waker.clone();
        } else {
            st.wakers.push((seq, waker.clone()));
        }
    }

    pub(crate) fn register_callback(st: &mut State, seq: u64, cb: Callback) {
        st.callbacks.push((seq, cb));
    }
}

fn extract(list: &mut Vec<(u64, Waker)>, upto: u64) -> Vec<Waker> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < list.len() {
        if list[i].0 <= upto {
            out.push(list.swap_remove(i).1);
        } else {
            i += 1;
        }
    }
    out
}
