//! Alarms: at-least-once delivery with retries and backoff on a manual
//! clock, named alarms, firing while hibernated, and surviving a restart.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use amber::runtime::{AlarmInfo, Ctx, ObjectClass, Request, Response, Runtime, RuntimeConfig};
use amber::{ManualClock, Store};
use support::{eventually, fast_config, store_at};

const T0: u64 = 1_700_000_000_000;

#[derive(Default)]
struct Log {
    fired: Mutex<Vec<AlarmInfo>>,
    /// Attempts that fail before one succeeds.
    failures: AtomicU32,
}

struct Alarmed {
    log: Arc<Log>,
}

impl ObjectClass for Alarmed {
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> amber::Result<Response> {
        let at: u64 = req.query_param("at").unwrap().parse().unwrap();
        match req.query_param("name") {
            Some(n) => ctx.storage().set_named_alarm_ms(n, at)?,
            None => ctx.storage().set_alarm_ms(at)?,
        }
        Ok(Response::ok("set"))
    }

    fn alarm(&mut self, ctx: &mut Ctx<'_>, alarm: &AlarmInfo) -> amber::Result<()> {
        self.log.fired.lock().unwrap().push(alarm.clone());
        let failing = self
            .log
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(amber::Error::new(amber::ErrorKind::Io, "downstream failed"));
        }
        ctx.storage().put(&format!("done:{}", alarm.name), b"1")
    }
}

fn runtime(store: Store, cfg: RuntimeConfig) -> (Runtime, Arc<Log>) {
    let log = Arc::new(Log::default());
    let l = log.clone();
    let rt = Runtime::builder(store)
        .class("alarmed", move || Alarmed { log: l.clone() })
        .config(cfg)
        .start()
        .unwrap();
    (rt, log)
}

fn set(rt: &Runtime, obj: &str, at: u64, name: Option<&str>) {
    let ns = rt.namespace("alarmed").unwrap();
    let stub = ns.get(&ns.id_from_name(obj).unwrap()).unwrap();
    let q = match name {
        Some(n) => format!("/?at={at}&name={n}"),
        None => format!("/?at={at}"),
    };
    stub.fetch(Request::new("POST", &q)).wait().unwrap();
}

fn fired(log: &Log) -> Vec<(String, u32, bool)> {
    log.fired
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.name.clone(), a.retry_count, a.is_retry))
        .collect()
}

#[test]
fn failed_alarms_retry_with_exponential_backoff_then_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (rt, log) = runtime(store_at(dir.path(), clock.clone()), fast_config());
    log.failures.store(2, Ordering::SeqCst);
    // A time in the past fires at once.
    set(&rt, "r", T0 - 5_000, None);
    assert!(eventually(5, || fired(&log).len() == 1));
    let id = rt.namespace("alarmed").unwrap().id_from_name("r").unwrap();
    assert!(eventually(5, || rt
        .alarm_schedule(&id, "")
        .is_some_and(|s| s.1 == 1)));
    let (next, _) = rt.alarm_schedule(&id, "").unwrap();
    assert!(
        (T0 + 2_000..=T0 + 2_500).contains(&next),
        "first retry after 2 s + jitter: {next}"
    );
    // Nothing fires before the backoff runs out.
    clock.set(next - 1);
    rt.poke_alarms();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(fired(&log).len(), 1);
    clock.set(next);
    assert!(eventually(5, || fired(&log).len() == 2));
    assert!(eventually(5, || rt
        .alarm_schedule(&id, "")
        .is_some_and(|s| s.1 == 2)));
    let (next2, _) = rt.alarm_schedule(&id, "").unwrap();
    assert!(
        (next + 4_000..=next + 5_000).contains(&(next2)),
        "second retry after 4 s + jitter: {}",
        next2 - next
    );
    clock.set(next2);
    assert!(eventually(5, || fired(&log).len() == 3));
    assert!(eventually(5, || rt.alarm_schedule(&id, "").is_none()));
    assert_eq!(
        fired(&log),
        [
            ("".into(), 0, false),
            ("".into(), 1, true),
            ("".into(), 2, true)
        ]
    );
    // Succeeded: the alarm is gone from storage too.
    drop(rt);
    let mut obj = store_at(dir.path(), clock)
        .open_object("alarmed:r")
        .unwrap();
    assert_eq!(obj.get_alarm_ms().unwrap(), None);
    assert_eq!(obj.get("done:").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn an_alarm_that_always_fails_is_dropped_after_max_retries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = fast_config();
    cfg.alarm_max_retries = 2;
    let (rt, log) = runtime(store_at(dir.path(), clock.clone()), cfg);
    log.failures.store(u32::MAX, Ordering::SeqCst);
    set(&rt, "f", T0, None);
    let id = rt.namespace("alarmed").unwrap().id_from_name("f").unwrap();
    for attempt in 1..=3 {
        assert!(eventually(5, || fired(&log).len() == attempt));
        clock.advance(60_000);
        rt.poke_alarms();
    }
    assert!(eventually(5, || rt.alarm_schedule(&id, "").is_none()));
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(fired(&log).len(), 3, "first attempt plus 2 retries");
    assert_eq!(rt.metrics().alarms_failed.load(Ordering::Relaxed), 3);
}

#[test]
fn named_alarms_fire_independently_even_while_hibernated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (rt, log) = runtime(store_at(dir.path(), clock.clone()), fast_config());
    set(&rt, "n", T0 + 1_000, Some("a"));
    set(&rt, "n", T0 + 2_000, Some("b"));
    set(&rt, "n", T0 + 3_000, None);
    let id = rt.namespace("alarmed").unwrap().id_from_name("n").unwrap();
    rt.hibernate(&id).wait().unwrap();
    assert!(!rt.is_live(&id));
    clock.set(T0 + 1_500);
    assert!(eventually(5, || fired(&log).len() == 1));
    assert!(rt.is_live(&id), "the alarm woke the object");
    rt.hibernate(&id).wait().unwrap();
    clock.set(T0 + 10_000);
    assert!(eventually(5, || fired(&log).len() == 3));
    let mut names: Vec<_> = fired(&log).into_iter().map(|f| f.0).collect();
    assert_eq!(names.remove(0), "a");
    names.sort();
    assert_eq!(names, ["", "b"]);
}

#[test]
fn alarms_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    {
        let (rt, log) = runtime(store_at(dir.path(), clock.clone()), fast_config());
        set(&rt, "persist", T0 + 60_000, None);
        set(&rt, "persist", T0 + 90_000, Some("later"));
        rt.shutdown();
        assert!(fired(&log).is_empty());
    }
    // A new process: no request opens the object; the scheduler finds the
    // stored alarms by scanning the store, and wakes it.
    clock.set(T0 + 120_000);
    let (rt, log) = runtime(store_at(dir.path(), clock.clone()), fast_config());
    assert!(eventually(5, || fired(&log).len() == 2));
    assert_eq!(rt.metrics().activations.load(Ordering::Relaxed), 1);
    let infos = log.fired.lock().unwrap().clone();
    assert!(infos
        .iter()
        .any(|a| a.name.is_empty() && a.scheduled_ms == T0 + 60_000));
    assert!(infos
        .iter()
        .any(|a| a.name == "later" && a.scheduled_ms == T0 + 90_000));
}

#[test]
fn moving_or_deleting_an_alarm_replaces_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let (rt, log) = runtime(store_at(dir.path(), clock.clone()), fast_config());
    set(&rt, "m", T0 + 1_000, None);
    set(&rt, "m", T0 + 5_000, None);
    let id = rt.namespace("alarmed").unwrap().id_from_name("m").unwrap();
    assert_eq!(rt.alarm_schedule(&id, ""), Some((T0 + 5_000, 0)));
    clock.set(T0 + 2_000);
    rt.poke_alarms();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(fired(&log).is_empty(), "the old time no longer fires");
    clock.set(T0 + 5_000);
    assert!(eventually(5, || fired(&log).len() == 1));
    assert_eq!(log.fired.lock().unwrap()[0].scheduled_ms, T0 + 5_000);
}
