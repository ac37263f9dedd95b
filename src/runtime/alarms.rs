//! The alarm scheduler. Alarms are stored in each object's database; this
//! keeps an in-memory index of all of them (built by scanning the store at
//! start, then refreshed after every turn that writes), and turns each due
//! alarm into an event on its object, waking it if it hibernates.
//!
//! Delivery is at least once: an alarm is deleted in the same turn as its
//! successful handler, so a crash or failed commit before that turn is
//! durable leaves it stored, and it fires again. A failed handler is
//! retried after `base * 2^(n-1)` ms plus up to 25% jitter for retry `n`,
//! up to `alarm_max_retries` times; then the alarm is deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::id::Id;
use super::slot::{lock, Event};
use super::{Inner, RuntimeConfig};
use crate::clock::Clock;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler succeeded (and the alarm was deleted if unchanged).
    Done,
    /// The handler, or the turn's commit, failed: retry with backoff.
    Failed,
    /// The stored alarm no longer matches; nothing ran.
    Stale,
}

struct Entry {
    time_ms: u64,
    retry: u32,
    next_ms: u64,
    in_flight: bool,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<(Id, String), Entry>,
    /// (next_ms, id, name) of entries not in flight.
    due: BTreeSet<(u64, Id, String)>,
    rng: u64,
}

pub(crate) struct Scheduler {
    state: Mutex<State>,
    cond: Condvar,
    stop: AtomicBool,
    base_ms: u64,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    pub(crate) fn new(cfg: &RuntimeConfig, clock: Arc<dyn Clock>) -> Scheduler {
        let seed = cfg.rng_seed.unwrap_or_else(|| {
            let mut b = [0u8; 8];
            let _ = getrandom::fill(&mut b);
            u64::from_le_bytes(b)
        });
        Scheduler {
            state: Mutex::new(State {
                rng: seed,
                ..State::default()
            }),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            base_ms: cfg.alarm_backoff_base_ms,
            clock,
        }
    }

    /// Replaces the index of `id`'s alarms with `list` (name, time). An
    /// alarm whose time did not change keeps its retry state.
    pub(crate) fn set_object(&self, id: &Id, list: Vec<(String, u64)>) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let existing: Vec<String> = st
            .entries
            .range((id.clone(), String::new())..)
            .take_while(|((i, _), _)| i == id)
            .map(|((_, n), _)| n.clone())
            .collect();
        for name in existing {
            if !list.iter().any(|(n, _)| *n == name) {
                if let Some(e) = st.entries.remove(&(id.clone(), name.clone())) {
                    st.due.remove(&(e.next_ms, id.clone(), name));
                }
            }
        }
        for (name, time_ms) in list {
            let key = (id.clone(), name.clone());
            match st.entries.get_mut(&key) {
                Some(e) if e.time_ms == time_ms => {}
                Some(e) => {
                    if !e.in_flight {
                        st.due.remove(&(e.next_ms, id.clone(), name.clone()));
                    }
                    *e = Entry {
                        time_ms,
                        retry: 0,
                        next_ms: time_ms,
                        in_flight: false,
                    };
                    st.due.insert((time_ms, id.clone(), name));
                }
                None => {
                    st.entries.insert(
                        key,
                        Entry {
                            time_ms,
                            retry: 0,
                            next_ms: time_ms,
                            in_flight: false,
                        },
                    );
                    st.due.insert((time_ms, id.clone(), name));
                }
            }
        }
        drop(guard);
        self.cond.notify_all();
    }

    /// Records how a delivery of (`id`, `name`, `time_ms`) went.
    pub(crate) fn done(&self, id: &Id, name: &str, time_ms: u64, outcome: Outcome) {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let key = (id.clone(), name.to_owned());
        let Some(e) = st.entries.get_mut(&key) else {
            return;
        };
        if e.time_ms != time_ms || !e.in_flight {
            return; // moved meanwhile: the new time is already scheduled
        }
        e.in_flight = false;
        match outcome {
            Outcome::Failed => {
                e.retry += 1;
                let delay = self.base_ms.saturating_mul(1u64 << (e.retry - 1).min(20));
                let jitter = next_rand(&mut st.rng) % (delay / 4 + 1);
                // Retries count from when the failure was recorded.
                e.next_ms = self.clock.now_ms() + delay + jitter;
            }
            Outcome::Done | Outcome::Stale => {
                // Still stored with this time (not deleted, not moved):
                // deliver again, as at-least-once requires.
            }
        }
        st.due.insert((e.next_ms, id.clone(), name.to_owned()));
        self.cond.notify_all();
    }

    /// True while `id` has an alarm in the index.
    pub(crate) fn has_pending(&self, id: &Id) -> bool {
        lock(&self.state)
            .entries
            .range((id.clone(), String::new())..)
            .next()
            .is_some_and(|((i, _), _)| i == id)
    }

    /// When the next retry of (`id`, `name`) is due, for tests and tools.
    pub(crate) fn next_attempt(&self, id: &Id, name: &str) -> Option<(u64, u32)> {
        lock(&self.state)
            .entries
            .get(&(id.clone(), name.to_owned()))
            .map(|e| (e.next_ms, e.retry))
    }

    pub(crate) fn poke(&self) {
        self.cond.notify_all();
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.cond.notify_all();
    }

    /// Takes every due alarm out of the queue and marks it in flight.
    fn take_due(&self, now_ms: u64) -> Vec<(Id, String, u64, u32)> {
        let mut st = lock(&self.state);
        let st = &mut *st;
        let mut out = Vec::new();
        while let Some((next, _, _)) = st.due.first() {
            if *next > now_ms {
                break;
            }
            let (_, id, name) = st.due.pop_first().expect("checked");
            if let Some(e) = st.entries.get_mut(&(id.clone(), name.clone())) {
                e.in_flight = true;
                out.push((id, name, e.time_ms, e.retry));
            }
        }
        out
    }
}

/// splitmix64: small, seedable, good enough for jitter.
fn next_rand(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Indexes the alarms of the stored objects of registered classes. Only
/// objects the store catalog lists with an alarm (or one not known) are
/// opened, so start-up does not grow with the number of objects. Runs
/// before any worker, so opening each object cannot race with an event.
pub(crate) fn index_store(inner: &Arc<Inner>) -> Result<()> {
    let mut objects = 0usize;
    let mut alarms = 0usize;
    if inner.store.cluster().is_some() {
        // Opening would take the object from whichever host owns it now;
        // its alarms are loaded when it activates here.
        return Ok(());
    }
    let mut after = None;
    loop {
        let page = inner.store.catalog().alarmed(after.as_ref(), INDEX_PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.0);
        for (_, name, _) in page {
            let Some(id) = Id::from_store_name(&inner.store, &name) else {
                continue;
            };
            if inner.namespace(id.class()).is_err() {
                continue;
            }
            objects += 1;
            // Opening puts the object's true earliest alarm in the catalog.
            let mut obj = match inner.store.open_object(&name) {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "could not index alarms");
                    continue;
                }
            };
            let list = obj.list_alarms()?;
            alarms += list.len();
            if !list.is_empty() {
                inner.alarms.set_object(&id, list);
            }
        }
    }
    tracing::info!(objects, alarms, "alarm index built");
    Ok(())
}

/// Catalog rows read per step of `index_store`.
const INDEX_PAGE: usize = 1000;

/// The scheduler thread.
pub(crate) fn run(inner: Arc<Inner>) {
    let s = &inner.alarms;
    loop {
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        let now = inner.clock.now_ms();
        for (id, name, time_ms, retry) in s.take_due(now) {
            let ev = Event::Alarm {
                name: name.clone(),
                time_ms,
                retry,
            };
            if inner.enqueue(&id, ev).is_err() {
                s.done(&id, &name, time_ms, Outcome::Stale);
            }
        }
        let st = lock(&s.state);
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        let wait = match st.due.first() {
            Some((next, _, _)) => {
                let ms = next.saturating_sub(inner.clock.now_ms());
                std::time::Duration::from_millis(ms).min(inner.cfg.alarm_poll_interval)
            }
            None => inner.cfg.alarm_poll_interval,
        };
        if !wait.is_zero() {
            let _ = s.cond.wait_timeout(st, wait);
        }
    }
}
