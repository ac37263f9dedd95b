//! Eviction. Every `housekeeping_interval`, objects idle longer than their
//! timeout (`hibernation_timeout` with open sockets, `idle_timeout`
//! otherwise) are closed; then, while the estimated memory of live
//! instances exceeds `memory_budget_bytes`, or their number
//! `max_live_objects` (then at once, not at the next interval), the least
//! recently used are closed. Eviction is an event in the object's own mailbox, so it never
//! races a turn, and it is skipped if another event arrived meanwhile.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slot::{Event, Slot};
use super::Inner;

pub(crate) fn run(inner: Arc<Inner>) {
    let step = inner
        .cfg
        .housekeeping_interval
        .min(Duration::from_millis(50));
    let mut last = Instant::now();
    let mut generation = inner.store.cluster().map(|c| c.generation());
    while !inner.is_closing() {
        std::thread::sleep(step);
        // Cluster mode: a host that fenced itself closes every object it
        // had open (their handles would only fail now), at once.
        if let Some(c) = inner.store.cluster() {
            let g = c.generation();
            if generation != Some(g) {
                generation = Some(g);
                let n = close_all(&inner);
                tracing::warn!(objects = n, "fenced: closed every open object");
            }
        }
        if last.elapsed() >= inner.cfg.housekeeping_interval
            || inner.sweep_now.swap(false, Ordering::AcqRel)
        {
            last = Instant::now();
            sweep(&inner);
        }
    }
}

fn sweep(inner: &Arc<Inner>) {
    let now = inner.clock.now_ms();
    let idle_ms = inner.cfg.idle_timeout.as_millis() as u64;
    let hib_ms = inner.cfg.hibernation_timeout.as_millis() as u64;
    let mut live: Vec<(u64, usize, Arc<Slot>)> = Vec::new();
    let mut total = 0usize;
    for slot in inner.all_slots() {
        if !slot.live.load(Ordering::Acquire) || slot.evict_pending.load(Ordering::Acquire) {
            continue;
        }
        let last = slot.last_active_ms.load(Ordering::Acquire);
        let timeout = if slot.has_sockets() { hib_ms } else { idle_ms };
        if now.saturating_sub(last) >= timeout {
            evict(inner, &slot);
            continue;
        }
        let mem = slot.mem.load(Ordering::Acquire);
        total += mem;
        live.push((last, mem, slot));
    }
    let max_live = inner.cfg.max_live_objects;
    if total <= inner.cfg.memory_budget_bytes && live.len() <= max_live {
        return;
    }
    live.sort_by_key(|(last, _, _)| *last);
    let mut count = live.len();
    for (_, mem, slot) in live {
        if total <= inner.cfg.memory_budget_bytes && count <= max_live {
            break;
        }
        evict(inner, &slot);
        total -= mem;
        count -= 1;
    }
}

fn close_all(inner: &Arc<Inner>) -> usize {
    let mut n = 0;
    for slot in inner.all_slots() {
        if slot.live.load(Ordering::Acquire) {
            evict_with(inner, &slot, true);
            n += 1;
        }
    }
    n
}

fn evict(inner: &Arc<Inner>, slot: &Arc<Slot>) {
    evict_with(inner, slot, false)
}

fn evict_with(inner: &Arc<Inner>, slot: &Arc<Slot>, force: bool) {
    slot.evict_pending.store(true, Ordering::Release);
    let ev = Event::Evict {
        activity: slot.activity.load(Ordering::Acquire),
        force,
        done: None,
    };
    if inner.enqueue(&slot.id, ev).is_err() {
        slot.evict_pending.store(false, Ordering::Release);
    }
}
