//! Execution: one live instance per id, input-gate ordering, turn
//! atomicity, the output gate, broken commits, RPC, backpressure, ids.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amber::runtime::{Ctx, ObjectClass, Request, Response, Runtime, RuntimeConfig};
use amber::{Config, ErrorKind, Limits, ManualClock, Store};
use support::{eventually, fast_config};

/// Shared probes the test reads.
#[derive(Default)]
struct Probe {
    live: AtomicUsize,
    max_live: AtomicUsize,
    created: AtomicUsize,
    in_turn: AtomicBool,
    overlaps: AtomicUsize,
    /// A request to `/block` waits here until the test sends.
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

struct Worker {
    probe: Arc<Probe>,
}

impl Worker {
    fn new(probe: Arc<Probe>) -> Worker {
        let n = probe.live.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_live.fetch_max(n, Ordering::SeqCst);
        probe.created.fetch_add(1, Ordering::SeqCst);
        Worker { probe }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.probe.live.fetch_sub(1, Ordering::SeqCst);
    }
}

fn int(ctx: &mut Ctx<'_>, key: &str) -> i64 {
    ctx.storage()
        .get(key)
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
        .unwrap_or(0)
}

impl ObjectClass for Worker {
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> amber::Result<Response> {
        if self.probe.in_turn.swap(true, Ordering::SeqCst) {
            self.probe.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        let res = self.handle(ctx, req);
        self.probe.in_turn.store(false, Ordering::SeqCst);
        res
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, method: &str, body: Vec<u8>) -> amber::Result<Vec<u8>> {
        match method {
            "echo" => Ok(body),
            "whoami" => Ok(ctx.name().unwrap_or("?").as_bytes().to_vec()),
            _ => Err(amber::Error::new(ErrorKind::InvalidInput, "no such method")),
        }
    }

    fn rpc_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        token: u64,
        reply: amber::Result<Vec<u8>>,
    ) -> amber::Result<()> {
        let v = match reply {
            Ok(b) => format!("{token}:{}", String::from_utf8_lossy(&b)),
            Err(e) => format!("{token}:err:{:?}", e.kind()),
        };
        ctx.storage().put("reply", v.as_bytes())
    }
}

impl Worker {
    fn handle(&mut self, ctx: &mut Ctx<'_>, req: Request) -> amber::Result<Response> {
        match req.path.as_str() {
            "/incr" => {
                let n = int(ctx, "n") + 1;
                ctx.storage().put("n", n.to_string().as_bytes())?;
                Ok(Response::ok(n.to_string()))
            }
            "/append" => {
                // Input-gate ordering: the log records the order turns ran.
                let mut log = ctx.storage().get("log")?.unwrap_or_default();
                log.extend_from_slice(&req.body);
                log.push(b',');
                ctx.storage().put("log", &log)?;
                Ok(Response::ok(""))
            }
            "/incr-unconfirmed" => {
                let n = int(ctx, "n") + 1;
                let opts = amber::WriteOptions {
                    allow_unconfirmed: true,
                    ..Default::default()
                };
                ctx.storage()
                    .put_with("n", n.to_string().as_bytes(), opts)?;
                Ok(Response::ok(n.to_string()))
            }
            "/get" => {
                let key = req.query_param("k").unwrap_or("n").to_owned();
                Ok(Response::ok(ctx.storage().get(&key)?.unwrap_or_default()))
            }
            "/two-then-panic" => {
                ctx.storage().put("a", b"1")?;
                ctx.storage()
                    .exec("CREATE TABLE IF NOT EXISTS t (x)", &[])?;
                panic!("handler bug after a write");
            }
            "/big" => {
                // Coalesced KV writes reach SQLite only at the end of the
                // turn, so an object over its size limit fails at commit.
                ctx.storage().put("n", b"999")?;
                ctx.storage().put("big", &vec![7u8; 100 * 1024])?;
                Ok(Response::ok("should not be seen"))
            }
            "/block" => {
                let rx = self.probe.gate.lock().unwrap().take();
                if let Some(rx) = rx {
                    let _ = rx.recv_timeout(Duration::from_secs(10));
                }
                Ok(Response::ok("unblocked"))
            }
            "/self-call" => {
                let ns = ctx.namespace(ctx.id().class())?;
                let me = ns.get(ctx.id())?;
                ctx.call(&me, "echo", req.body.clone(), 7);
                Ok(Response::ok("sent"))
            }
            "/self-block" => {
                let ns = ctx.namespace(ctx.id().class())?;
                let me = ns.get(ctx.id())?;
                match me.call("echo", b"x".to_vec()).wait() {
                    Ok(_) => Ok(Response::ok("no error?")),
                    Err(e) => Ok(Response::ok(format!("{:?}", e.kind()))),
                }
            }
            "/call-peer" => {
                let ns = ctx.namespace(ctx.id().class())?;
                let peer = ns.get(&ns.id_from_name(req.query_param("peer").unwrap())?)?;
                ctx.call(&peer, "whoami", Vec::new(), 9);
                Ok(Response::ok("sent"))
            }
            "/bcw" => {
                let fail = req.query_param("fail").is_some();
                let v = ctx.block_concurrency_while(|o| {
                    o.put("bcw", b"inside")?;
                    if fail {
                        return Err(amber::Error::new(ErrorKind::InvalidInput, "init failed"));
                    }
                    Ok(42)
                })?;
                // Committed (and durable) before the handler goes on.
                let seq = ctx.storage().seq();
                Ok(Response::ok(format!("{v}:{seq}")))
            }
            "/whoami" => Ok(Response::ok(format!(
                "{}|{}",
                ctx.name().unwrap_or("<unique>"),
                ctx.id()
            ))),
            _ => Ok(Response::not_found()),
        }
    }
}

fn runtime_with(cfg: RuntimeConfig, store: Store) -> (Runtime, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let rt = Runtime::builder(store)
        .class("worker", move || Worker::new(p.clone()))
        .config(cfg)
        .start()
        .unwrap();
    (rt, probe)
}

fn body(r: amber::Result<Response>) -> String {
    String::from_utf8(r.unwrap().body).unwrap()
}

#[test]
fn one_live_instance_under_concurrent_callers() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, probe) = runtime_with(fast_config(), Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let id = ns.id_from_name("shared").unwrap();
    std::thread::scope(|s| {
        for _ in 0..8 {
            let stub = ns.get(&id).unwrap();
            s.spawn(move || {
                for _ in 0..25 {
                    stub.fetch(Request::new("POST", "/incr")).wait().unwrap();
                }
            });
        }
    });
    let stub = ns.get(&id).unwrap();
    assert_eq!(body(stub.fetch(Request::new("GET", "/get")).wait()), "200");
    assert_eq!(
        probe.created.load(Ordering::SeqCst),
        1,
        "one instance for the id"
    );
    assert_eq!(probe.max_live.load(Ordering::SeqCst), 1);
    assert_eq!(
        probe.overlaps.load(Ordering::SeqCst),
        0,
        "turns never overlap"
    );
}

#[test]
fn events_run_in_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime_with(fast_config(), Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("ordered").unwrap()).unwrap();
    let pending: Vec<_> = (0..50)
        .map(|i| stub.fetch(Request::new("POST", "/append").with_body(i.to_string())))
        .collect();
    for p in pending {
        p.wait().unwrap();
    }
    let log = body(stub.fetch(Request::new("GET", "/get?k=log")).wait());
    let want: String = (0..50).map(|i| format!("{i},")).collect();
    assert_eq!(log, want);
}

#[test]
fn a_panicking_turn_commits_nothing_and_resets_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, probe) = runtime_with(fast_config(), Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("atomic").unwrap()).unwrap();
    let err = stub
        .fetch(Request::new("POST", "/two-then-panic"))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    // Neither the KV write nor the table survived: the turn rolled back.
    assert_eq!(body(stub.fetch(Request::new("GET", "/get?k=a")).wait()), "");
    assert_eq!(
        probe.created.load(Ordering::SeqCst),
        2,
        "instance was reset"
    );
    assert_eq!(probe.live.load(Ordering::SeqCst), 1);
}

#[test]
fn output_gate_holds_replies_until_the_commit_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    // The hook stands in for a slow fsync: the first commit of the object
    // does not count as durable until the test releases it.
    type Release = Box<dyn FnOnce() + Send>;
    let held: Arc<Mutex<Option<Release>>> = Arc::new(Mutex::new(None));
    let first = Arc::new(AtomicBool::new(true));
    let mut cfg = fast_config();
    let (h, f) = (held.clone(), first.clone());
    cfg.gate_hook = Some(Arc::new(move |_id, seq, release: Release| {
        if seq == 1 && f.swap(false, Ordering::SeqCst) {
            *h.lock().unwrap() = Some(release);
        } else {
            release();
        }
    }));
    let (rt, _) = runtime_with(cfg, Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("gated").unwrap()).unwrap();
    let (tx, rx) = mpsc::channel();
    for path in ["/incr", "/get"] {
        let (stub, tx) = (stub.clone(), tx.clone());
        let p = stub.fetch(Request::new("POST", path));
        std::thread::spawn(move || tx.send((path, body(p.wait()))).unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The write ran and the read after it saw it, but neither reply left:
    // the read's reply queues behind the unconfirmed write.
    assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    assert!(
        eventually(5, || held.lock().unwrap().is_some()),
        "the write's ticket resolved"
    );
    let release = held.lock().unwrap().take().unwrap();
    release();
    // Both leave now. (Their order is not observable here: two threads
    // race to report them.)
    let mut got = vec![
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        rx.recv_timeout(Duration::from_secs(5)).unwrap(),
    ];
    got.sort();
    assert_eq!(got, [("/get", "1".to_owned()), ("/incr", "1".to_owned())]);
}

#[test]
fn a_failed_commit_turns_the_reply_into_an_error_and_resets() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_object_bytes: 64 * 1024,
        ..Limits::default()
    };
    let store = Store::open(Config::new(dir.path()).with_limits(limits)).unwrap();
    let (rt, probe) = runtime_with(fast_config(), store);
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("breaks").unwrap()).unwrap();
    assert_eq!(body(stub.fetch(Request::new("POST", "/incr")).wait()), "1");
    let err = stub.fetch(Request::new("POST", "/big")).wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Broken, "{err:?}");
    // The next event reopens the object; the failed turn left no trace.
    assert_eq!(body(stub.fetch(Request::new("GET", "/get")).wait()), "1");
    assert_eq!(probe.created.load(Ordering::SeqCst), 2);
    assert!(rt.metrics().resets.load(Ordering::Relaxed) >= 1);
}

#[test]
fn rpc_to_self_and_peers_without_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, _) = runtime_with(fast_config(), Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let a = ns.get(&ns.id_from_name("a").unwrap()).unwrap();
    // Blocking on a call to yourself fails at once instead of hanging.
    assert_eq!(
        body(a.fetch(Request::new("GET", "/self-block")).wait()),
        "InvalidInput"
    );
    // Through Ctx::call, the reply arrives as an event.
    let sent = a.fetch(Request::new("POST", "/self-call").with_body("hi"));
    assert_eq!(body(sent.wait()), "sent");
    assert!(eventually(5, || {
        body(a.fetch(Request::new("GET", "/get?k=reply")).wait()) == "7:hi"
    }));
    a.fetch(Request::new("POST", "/call-peer?peer=b"))
        .wait()
        .unwrap();
    assert!(eventually(5, || {
        body(a.fetch(Request::new("GET", "/get?k=reply")).wait()) == "9:b"
    }));
    // And from outside, a stub call is a plain request/response.
    let b = ns.get(&ns.id_from_name("b").unwrap()).unwrap();
    assert_eq!(b.call("echo", b"ping".to_vec()).wait().unwrap(), b"ping");
    let err = b.call("nope", Vec::new()).wait().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn a_full_mailbox_refuses_with_overloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fast_config();
    cfg.mailbox_capacity = 3;
    let (rt, probe) = runtime_with(cfg, Store::open(Config::new(dir.path())).unwrap());
    let (tx, rx) = mpsc::channel();
    *probe.gate.lock().unwrap() = Some(rx);
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("busy").unwrap()).unwrap();
    let first = stub.fetch(Request::new("POST", "/block"));
    assert!(eventually(5, || probe.in_turn.load(Ordering::SeqCst)));
    let queued: Vec<_> = (0..3)
        .map(|_| stub.fetch(Request::new("POST", "/incr")))
        .collect();
    let err = stub
        .fetch(Request::new("POST", "/incr"))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(err.is_retryable());
    tx.send(()).unwrap();
    assert_eq!(body(first.wait()), "unblocked");
    let got: Vec<String> = queued.into_iter().map(|p| body(p.wait())).collect();
    assert_eq!(got, ["1", "2", "3"]);
    assert_eq!(rt.metrics().overloaded.load(Ordering::Relaxed), 1);
}

#[test]
fn ids_from_names_unique_ids_and_strings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let store = support::store_at(dir.path(), clock);
    let (rt, _) = runtime_with(fast_config(), store);
    let ns = rt.namespace("worker").unwrap();
    let a = ns.id_from_name("alice").unwrap();
    assert_eq!(a, ns.id_from_name("alice").unwrap());
    assert_ne!(a, ns.id_from_name("bob").unwrap());
    assert_eq!(ns.id_from_string(&a.to_string()).unwrap(), a);
    let u = ns.new_unique_id().unwrap();
    assert_ne!(u, ns.new_unique_id().unwrap());
    let parsed = ns.id_from_string(&u.to_string()).unwrap();
    assert_eq!(parsed, u);
    assert_eq!(parsed.name(), None);
    // Malformed, forged and unknown strings are typed errors.
    for bad in ["", "xyz", &"0".repeat(64), &u.to_string().to_uppercase()] {
        let e = ns.id_from_string(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
    }
    assert!(rt.namespace("nope").is_err());
    assert!(ns.id_from_name("").is_err());
    // An object knows its own id and name.
    let who = body(
        ns.get(&a)
            .unwrap()
            .fetch(Request::new("GET", "/whoami"))
            .wait(),
    );
    assert_eq!(who, format!("alice|{a}"));
    let who = body(
        ns.get(&u)
            .unwrap()
            .fetch(Request::new("GET", "/whoami"))
            .wait(),
    );
    assert_eq!(who, format!("<unique>|{u}"));
    // Unique ids are per namespace.
    let rt2 = Runtime::builder(rt.store().clone())
        .class("other", || Worker::new(Arc::new(Probe::default())))
        .start()
        .unwrap();
    let other = rt2.namespace("other").unwrap();
    assert!(other.id_from_string(&u.to_string()).is_err());
    assert!(other.get(&u).is_err());
}

#[test]
fn block_concurrency_while_commits_durably_or_resets() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, probe) = runtime_with(fast_config(), Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("bcw").unwrap()).unwrap();
    assert_eq!(
        body(stub.fetch(Request::new("POST", "/bcw")).wait()),
        "42:1"
    );
    assert_eq!(
        body(stub.fetch(Request::new("GET", "/get?k=bcw")).wait()),
        "inside"
    );
    stub.fetch(Request::new("POST", "/incr")).wait().unwrap();
    // A failing closure: the reply is an error, the turn's writes are
    // dropped, and the instance is reset.
    let err = stub
        .fetch(Request::new("POST", "/bcw?fail=1"))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed);
    assert!(err.message().contains("block_concurrency_while"), "{err}");
    assert_eq!(probe.created.load(Ordering::SeqCst), 1);
    assert_eq!(body(stub.fetch(Request::new("GET", "/get")).wait()), "1");
    assert_eq!(
        probe.created.load(Ordering::SeqCst),
        2,
        "reset after the failure"
    );
}

#[test]
fn allow_unconfirmed_writes_do_not_hold_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    type Release = Box<dyn FnOnce() + Send>;
    let held: Arc<Mutex<Vec<Release>>> = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    let mut cfg = fast_config();
    // Every commit after the first is "slow": its outputs wait for the test.
    cfg.gate_hook = Some(Arc::new(move |_id, seq, release: Release| {
        if seq >= 2 {
            h.lock().unwrap().push(release);
        } else {
            release();
        }
    }));
    let (rt, _) = runtime_with(cfg, Store::open(Config::new(dir.path())).unwrap());
    let ns = rt.namespace("worker").unwrap();
    let stub = ns.get(&ns.id_from_name("unconfirmed").unwrap()).unwrap();
    assert_eq!(body(stub.fetch(Request::new("POST", "/incr")).wait()), "1");
    // An unconfirmed write's reply does not wait for its commit.
    let r = stub.fetch(Request::new("POST", "/incr-unconfirmed"));
    assert_eq!(body(r.wait_timeout(Duration::from_secs(5))), "2");
    // A confirmed one does.
    let r = stub.fetch(Request::new("POST", "/incr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(body(r.wait())).unwrap());
    assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    // Release what the hook holds (its fsync may still be running, so
    // keep releasing until the reply arrives).
    let mut got = None;
    for _ in 0..500 {
        let pending: Vec<Release> = held.lock().unwrap().drain(..).collect();
        pending.into_iter().for_each(|release| release());
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(10)) {
            got = Some(v);
            break;
        }
    }
    assert_eq!(got.as_deref(), Some("3"));
}
