//! Workers and turns. A slot with events is in the ready queue at most
//! once (its `scheduled` flag), so one worker at a time runs its events:
//! that is the input gate. Each event is one turn; the turn's outputs are
//! released by the ticket's callback (the output gate).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::Receiver;

use super::alarms::Outcome;
use super::class::AlarmInfo;
use super::ctx::{Action, Ctx, TurnState};
use super::namespace::CURRENT;
use super::slot::{lock, Event, Instance, ReplyTo, Slot};
use super::websocket::WebSocket;
use super::Inner;
use crate::durability::Ticket;
use crate::error::{Error, ErrorKind, Result};

/// Events a worker runs from one slot before giving others a turn.
const BATCH: usize = 32;

pub(crate) fn worker(inner: Arc<Inner>, rx: Receiver<Option<Arc<Slot>>>) {
    while let Ok(Some(slot)) = rx.recv() {
        for _ in 0..BATCH {
            let ev = {
                let mut mb = slot.mailbox();
                let ev = mb.queue.pop_front();
                if ev.as_ref().is_some_and(Event::is_external) {
                    mb.external -= 1;
                }
                ev
            };
            match ev {
                Some(ev) => run_event(&inner, &slot, ev),
                None => break,
            }
        }
        let mut mb = slot.mailbox();
        if mb.queue.is_empty() {
            mb.scheduled = false;
        } else {
            drop(mb);
            let _ = inner.ready.send(Some(slot));
        }
    }
}

fn run_event(inner: &Arc<Inner>, slot: &Arc<Slot>, ev: Event) {
    CURRENT.with(|c| c.set(Some(slot.id.raw())));
    let mut guard = lock(&slot.instance);
    if let Event::Delete { history, done } = ev {
        // In the object's own mailbox, so no event of it runs meanwhile:
        // the instance closes, then the store deletes it.
        if let Some(inst) = guard.take() {
            close_instance(inner, slot, inst);
        }
        drop(guard);
        let res = inner
            .store
            .delete_object(&slot.id.store_name(), history)
            .inspect(|_| inner.alarms.set_object(&slot.id, Vec::new()));
        let _ = done.send(res);
        inner.maybe_remove(slot);
        CURRENT.with(|c| c.set(None));
        return;
    }
    if let Event::Evict {
        activity,
        force,
        done,
    } = ev
    {
        let quiet = slot.activity.load(Ordering::Acquire) == activity;
        slot.evict_pending.store(false, Ordering::Release);
        if force || quiet {
            if let Some(inst) = guard.take() {
                close_instance(inner, slot, inst);
                inner.metrics.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(guard);
        if let Some(d) = done {
            let _ = d.send(Ok(()));
        }
        inner.maybe_remove(slot);
        CURRENT.with(|c| c.set(None));
        return;
    }
    if guard.as_ref().is_some_and(|i| i.obj.is_broken()) {
        tracing::warn!(object = %slot.id, "resetting broken object");
        *guard = None;
        inner.metrics.resets.fetch_add(1, Ordering::Relaxed);
        inner.set_live(slot, false);
    }
    if guard.is_none() {
        match activate(inner, slot) {
            Ok(inst) => *guard = Some(inst),
            Err(e) => {
                if e.kind() == crate::error::ErrorKind::NotOwner {
                    tracing::debug!(object = %slot.id, error = %e, "owned by another host");
                } else {
                    tracing::warn!(object = %slot.id, error = %e, "activation failed");
                }
                fail_event(inner, slot, ev, e);
                drop(guard);
                // Do not keep a slot for an object that never opened.
                inner.maybe_remove(slot);
                CURRENT.with(|c| c.set(None));
                return;
            }
        }
    }
    let inst = guard.as_mut().expect("activated above");
    let seq_before = inst.obj.seq();
    let mut turn = TurnState::default();
    let alarm = match &ev {
        Event::Alarm { name, time_ms, .. } => Some((name.clone(), *time_ms)),
        _ => None,
    };
    inner.metrics.turns.fetch_add(1, Ordering::Relaxed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        dispatch(inner, slot, inst, &mut turn, ev)
    }));
    let mut alarm_outcome = match outcome {
        Ok(o) => o,
        Err(_) => {
            // The handler panicked: drop the instance without committing,
            // which rolls the turn back. Held outputs are dropped, and
            // their callers see the event as dropped.
            tracing::error!(object = %slot.id, "handler panicked; instance reset");
            inner.metrics.resets.fetch_add(1, Ordering::Relaxed);
            *guard = None;
            inner.set_live(slot, false);
            drop(guard);
            if let Some((name, t)) = alarm {
                inner.alarms.done(&slot.id, &name, t, Outcome::Failed);
            }
            CURRENT.with(|c| c.set(None));
            return;
        }
    };
    if turn.reset {
        // A `block_concurrency_while` closure failed: reset without
        // committing what the rest of the turn wrote, as Durable Objects do.
        let err = Error::new(
            ErrorKind::Closed,
            "block_concurrency_while failed; the object was reset",
        );
        for a in turn.held {
            a(Err(err.clone()));
        }
        inner.metrics.resets.fetch_add(1, Ordering::Relaxed);
        *guard = None;
        inner.set_live(slot, false);
        drop(guard);
        if let Some((name, t)) = alarm {
            inner.alarms.done(&slot.id, &name, t, Outcome::Failed);
        }
        CURRENT.with(|c| c.set(None));
        return;
    }
    let started = Instant::now();
    match inst.obj.end_turn() {
        Ok(ticket) => {
            let wrote = inst.obj.seq() != seq_before;
            if wrote {
                inner.metrics.commits.fetch_add(1, Ordering::Relaxed);
                refresh_alarms(inner, slot, inst);
            } else if alarm_outcome == Some(Outcome::Stale) {
                refresh_alarms(inner, slot, inst);
            }
            release(inner, slot, ticket, turn.held, wrote, started);
        }
        Err(e) => {
            tracing::warn!(object = %slot.id, error = %e, "commit failed; replies become errors");
            for a in turn.held {
                a(Err(e.clone()));
            }
            turn.reset = true;
            if alarm_outcome.is_some() {
                alarm_outcome = Some(Outcome::Failed);
            }
        }
    }
    if turn.reset {
        inner.metrics.resets.fetch_add(1, Ordering::Relaxed);
        *guard = None;
        inner.set_live(slot, false);
    } else if let Some(i) = guard.as_ref() {
        slot.mem.store(
            inner.cfg.instance_overhead_bytes + i.obj.cache_bytes(),
            Ordering::Release,
        );
    }
    drop(guard);
    if let (Some((name, t)), Some(o)) = (alarm, alarm_outcome) {
        inner.alarms.done(&slot.id, &name, t, o);
    }
    CURRENT.with(|c| c.set(None));
}

/// Runs the handler for `ev`. Returns the alarm outcome for alarm events.
fn dispatch(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
    inst: &mut Instance,
    turn: &mut TurnState,
    ev: Event,
) -> Option<Outcome> {
    let Instance { class, obj } = inst;
    let mut ctx = Ctx {
        obj,
        inner,
        slot,
        turn,
    };
    match ev {
        Event::Fetch { req, reply } => {
            let res = class.fetch(&mut ctx, req);
            let accepted = ctx.turn.accepted.take();
            let socket = accepted.as_ref().map(|a| a.socket.id());
            let res = res.map(|mut r| {
                r.websocket = accepted;
                r
            });
            let slot = slot.clone();
            ctx.turn.held.push(Box::new(move |gate| {
                let res = gate.and(res);
                if let (Err(_), Some(s)) = (&res, socket) {
                    // Nobody will connect this socket: forget it.
                    slot.sockets().open.remove(&s);
                }
                let _ = reply.send(res);
            }));
        }
        Event::Call {
            method,
            body,
            reply,
        } => {
            let res = class.call(&mut ctx, &method, body);
            let inner = inner.clone();
            ctx.turn.held.push(Box::new(move |gate| {
                let res = gate.and(res);
                match reply {
                    ReplyTo::Caller(tx) => {
                        let _ = tx.send(res);
                    }
                    ReplyTo::Object(caller, token) => {
                        let _ = inner.enqueue(&caller, Event::RpcReply { token, result: res });
                    }
                    ReplyTo::Nobody => {}
                }
            }));
        }
        Event::RpcReply { token, result } => {
            log_err(
                &slot.id,
                "rpc_reply",
                class.rpc_reply(&mut ctx, token, result),
            );
        }
        Event::Alarm {
            name,
            time_ms,
            retry,
        } => {
            return Some(run_alarm(
                inner,
                class.as_mut(),
                &mut ctx,
                name,
                time_ms,
                retry,
            ))
        }
        Event::WsMessage { socket, msg } => {
            let ws = WebSocket::new(socket);
            if ctx.slot.sockets().open.contains_key(&socket) {
                log_err(
                    &slot.id,
                    "websocket_message",
                    class.websocket_message(&mut ctx, &ws, msg),
                );
            }
        }
        Event::WsClose {
            socket,
            code,
            reason,
        } => {
            let ws = WebSocket::new(socket);
            if ctx.slot.sockets().open.contains_key(&socket) {
                let r = class.websocket_close(&mut ctx, &ws, code, &reason);
                ctx.slot.sockets().open.remove(&socket);
                log_err(&slot.id, "websocket_close", r);
            }
        }
        Event::WsError { socket, error } => {
            let ws = WebSocket::new(socket);
            if ctx.slot.sockets().open.contains_key(&socket) {
                let r = class.websocket_error(&mut ctx, &ws, &error);
                ctx.slot.sockets().open.remove(&socket);
                log_err(&slot.id, "websocket_error", r);
            }
        }
        Event::Evict { .. } | Event::Delete { .. } => unreachable!("handled by run_event"),
    }
    None
}

fn run_alarm(
    inner: &Arc<Inner>,
    class: &mut dyn super::ObjectClass,
    ctx: &mut Ctx<'_>,
    name: String,
    time_ms: u64,
    retry: u32,
) -> Outcome {
    // Fire only if the alarm is still stored for this time: it may have
    // been moved or deleted since it was scheduled.
    match ctx.obj.get_named_alarm_ms(&name) {
        Ok(Some(t)) if t == time_ms => {}
        _ => return Outcome::Stale,
    }
    let info = AlarmInfo {
        name: name.clone(),
        scheduled_ms: time_ms,
        retry_count: retry,
        is_retry: retry > 0,
    };
    inner.metrics.alarms_fired.fetch_add(1, Ordering::Relaxed);
    let res = class.alarm(ctx, &info);
    let give_up = res.is_err() && retry >= inner.cfg.alarm_max_retries;
    if let Err(e) = &res {
        inner.metrics.alarms_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(object = %ctx.slot.id, alarm = %name, retry, give_up, error = %e, "alarm handler failed");
    }
    if res.is_ok() || give_up {
        // Delete it unless the handler set it to a new time.
        if matches!(ctx.obj.get_named_alarm_ms(&name), Ok(Some(t)) if t == time_ms) {
            if let Err(e) = ctx.obj.delete_named_alarm(&name) {
                tracing::warn!(object = %ctx.slot.id, error = %e, "could not delete fired alarm");
                return Outcome::Failed;
            }
        }
    }
    if res.is_ok() {
        Outcome::Done
    } else {
        Outcome::Failed
    }
}

fn log_err(id: &super::Id, what: &str, r: Result<()>) {
    if let Err(e) = r {
        tracing::warn!(object = %id, handler = what, error = %e, "handler failed");
    }
}

/// Opens the object's storage and makes a fresh instance.
fn activate(inner: &Arc<Inner>, slot: &Arc<Slot>) -> Result<Instance> {
    let t0 = Instant::now();
    let obj = inner.store.open_object(&slot.id.store_name())?;
    let mut inst = Instance {
        class: (slot.factory)(),
        obj,
    };
    let mut turn = TurnState::default();
    {
        let Instance { class, obj } = &mut inst;
        let mut ctx = Ctx {
            obj,
            inner,
            slot,
            turn: &mut turn,
        };
        class.start(&mut ctx)?;
    }
    let seq_before = inst.obj.seq();
    let ticket = inst.obj.end_turn()?;
    release(
        inner,
        slot,
        ticket,
        turn.held,
        inst.obj.seq() != seq_before,
        t0,
    );
    refresh_alarms(inner, slot, &mut inst);
    inner.set_live(slot, true);
    slot.mem
        .store(inner.cfg.instance_overhead_bytes, Ordering::Release);
    inner.metrics.activations.fetch_add(1, Ordering::Relaxed);
    inner.metrics.observe_wake(t0.elapsed());
    Ok(inst)
}

fn close_instance(inner: &Arc<Inner>, slot: &Arc<Slot>, inst: Instance) {
    let Instance { class, obj } = inst;
    drop(class);
    if let Err(e) = obj.close() {
        tracing::warn!(object = %slot.id, error = %e, "close failed");
    }
    inner.set_live(slot, false);
    slot.mem.store(0, Ordering::Release);
}

fn refresh_alarms(inner: &Arc<Inner>, slot: &Arc<Slot>, inst: &mut Instance) {
    match inst.obj.list_alarms() {
        Ok(list) => inner.alarms.set_object(&slot.id, list),
        Err(e) => tracing::warn!(object = %slot.id, error = %e, "could not read alarms"),
    }
}

/// The output gate: hands the turn's outputs to the ticket, which releases
/// them once the commit (and every confirmed one before it) is durable.
fn release(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
    ticket: Ticket,
    held: Vec<Action>,
    wrote: bool,
    started: Instant,
) {
    if held.is_empty() && !wrote {
        return;
    }
    let n = slot.gate.reserve();
    let inner = inner.clone();
    let slot = slot.clone();
    let seq = ticket.seq();
    ticket.on_complete(move |r| {
        if wrote {
            inner.metrics.observe_confirm(started.elapsed());
        }
        match (r, &inner.cfg.gate_hook) {
            (Ok(_), Some(hook)) => {
                let s = slot.clone();
                hook(
                    &slot.id,
                    seq,
                    Box::new(move || s.gate.complete(n, Ok(()), held)),
                );
            }
            (Ok(_), None) => slot.gate.complete(n, Ok(()), held),
            (Err(e), _) => slot.gate.complete(n, Err(e), held),
        }
    });
}

/// An event that could not run because the object would not open.
fn fail_event(inner: &Arc<Inner>, slot: &Arc<Slot>, ev: Event, e: Error) {
    match ev {
        Event::Fetch { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        Event::Call { reply, .. } => match reply {
            ReplyTo::Caller(tx) => {
                let _ = tx.send(Err(e));
            }
            ReplyTo::Object(caller, token) => {
                let _ = inner.enqueue(
                    &caller,
                    Event::RpcReply {
                        token,
                        result: Err(e),
                    },
                );
            }
            ReplyTo::Nobody => {}
        },
        Event::Alarm { name, time_ms, .. } => {
            inner.alarms.done(&slot.id, &name, time_ms, Outcome::Failed);
        }
        Event::WsClose { socket, .. } | Event::WsError { socket, .. } => {
            slot.sockets().open.remove(&socket);
        }
        Event::Delete { done, .. } => {
            let _ = done.send(Err(e));
        }
        Event::RpcReply { .. } | Event::WsMessage { .. } | Event::Evict { .. } => {}
    }
}
