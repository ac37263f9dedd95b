//! Hibernation and eviction: idle timeouts, the memory budget (LRU),
//! transparent reopen, and hibernatable WebSockets (tags, attachments,
//! auto-responses) across hibernation.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use amber::runtime::{
    AcceptedSocket, Ctx, ObjectClass, Request, Response, Runtime, RuntimeConfig, WebSocket,
    WsMessage, WsOut,
};
use amber::{ErrorKind, ManualClock};
use support::{eventually, fast_config, store_at};

const T0: u64 = 1_700_000_000_000;

/// Counts in KV; accepts sockets; echoes attachments.
#[derive(Default)]
struct Room;

impl ObjectClass for Room {
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> amber::Result<Response> {
        match req.path.as_str() {
            "/incr" => {
                let n = ctx.storage().get("n")?.map_or(0, |v| v[0]) + 1;
                ctx.storage().put("n", &[n])?;
                Ok(Response::ok(vec![n]))
            }
            "/join" => {
                let tags: Vec<&str> = req
                    .query_param("tags")
                    .unwrap_or("")
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .collect();
                let ws = ctx.accept_websocket(&tags)?;
                ctx.set_attachment(&ws, &req.body)?;
                ctx.set_websocket_auto_response(Some(("ping", "pong")))?;
                Ok(Response::switching_protocols())
            }
            "/count" => {
                let tag = req.query_param("tag");
                Ok(Response::ok(ctx.get_websockets(tag).len().to_string()))
            }
            "/attach-huge" => {
                let ws = ctx.get_websockets(None)[0];
                ctx.set_attachment(&ws, &vec![0u8; 16 * 1024 + 1])?;
                Ok(Response::ok(""))
            }
            _ => Ok(Response::not_found()),
        }
    }

    fn websocket_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        ws: &WebSocket,
        msg: WsMessage,
    ) -> amber::Result<()> {
        let WsMessage::Text(t) = msg else {
            return Ok(());
        };
        let who = String::from_utf8(ctx.attachment(ws).unwrap_or_default()).unwrap();
        let tags = ctx.websocket_tags(ws).join(",");
        ctx.send(ws, WsMessage::Text(format!("{who}[{tags}]: {t}")));
        Ok(())
    }

    fn websocket_close(
        &mut self,
        ctx: &mut Ctx<'_>,
        _ws: &WebSocket,
        code: u16,
        _: &str,
    ) -> amber::Result<()> {
        ctx.storage().put("closed", code.to_string().as_bytes())
    }
}

fn runtime(clock: Arc<ManualClock>, dir: &std::path::Path, cfg: RuntimeConfig) -> Runtime {
    Runtime::builder(store_at(dir, clock))
        .class("room", Room::default)
        .config(cfg)
        .start()
        .unwrap()
}

fn incr(rt: &Runtime, name: &str) -> u8 {
    let ns = rt.namespace("room").unwrap();
    let stub = ns.get(&ns.id_from_name(name).unwrap()).unwrap();
    stub.fetch(Request::new("POST", "/incr"))
        .wait()
        .unwrap()
        .body[0]
}

#[test]
fn idle_objects_are_evicted_and_reopen_with_state_intact() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = fast_config();
    cfg.idle_timeout = Duration::from_secs(70);
    let rt = runtime(clock.clone(), dir.path(), cfg);
    let id = rt.namespace("room").unwrap().id_from_name("idle").unwrap();
    assert_eq!(incr(&rt, "idle"), 1);
    assert!(rt.is_live(&id));
    clock.advance(69_000);
    std::thread::sleep(Duration::from_millis(60));
    assert!(rt.is_live(&id), "not idle long enough yet");
    clock.advance(2_000);
    assert!(eventually(5, || !rt.is_live(&id)));
    assert_eq!(rt.metrics().evictions.load(Ordering::Relaxed), 1);
    assert_eq!(incr(&rt, "idle"), 2, "reopened transparently");
    assert!(rt.is_live(&id));
    assert_eq!(rt.metrics().activations.load(Ordering::Relaxed), 2);
}

#[test]
fn live_instances_stay_within_max_live_objects_without_waiting_for_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = fast_config();
    cfg.max_live_objects = 8;
    // Only the count can trigger a sweep here.
    cfg.housekeeping_interval = Duration::from_secs(3600);
    let rt = runtime(clock, dir.path(), cfg);
    for i in 0..40 {
        assert_eq!(incr(&rt, &format!("m{i}")), 1);
    }
    assert!(
        eventually(5, || rt.live_objects() <= 8),
        "{} live",
        rt.live_objects()
    );
    assert!(rt.metrics().evictions.load(Ordering::Relaxed) >= 32);
    // Every evicted object reopens with its state.
    for i in 0..40 {
        assert_eq!(incr(&rt, &format!("m{i}")), 2);
    }
}

#[test]
fn the_memory_budget_evicts_the_least_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = fast_config();
    cfg.instance_overhead_bytes = 1_000;
    cfg.memory_budget_bytes = 2_500;
    let rt = runtime(clock.clone(), dir.path(), cfg);
    for name in ["o1", "o2", "o3", "o4"] {
        incr(&rt, name);
        clock.advance(10);
    }
    assert!(eventually(5, || rt.live_objects() <= 2));
    let ns = rt.namespace("room").unwrap();
    let live = |n: &str| rt.is_live(&ns.id_from_name(n).unwrap());
    assert!(live("o3") && live("o4"), "the most recently used stay");
    assert!(!live("o1") && !live("o2"));
    assert_eq!(incr(&rt, "o1"), 2);
}

fn join(rt: &Runtime, room: &str, who: &str, tags: &str) -> AcceptedSocket {
    let ns = rt.namespace("room").unwrap();
    let stub = ns.get(&ns.id_from_name(room).unwrap()).unwrap();
    let mut req = Request::new("GET", &format!("/join?tags={tags}")).with_body(who);
    req.websocket = true;
    let mut resp = stub.fetch(req).wait().unwrap();
    assert_eq!(resp.status, 101);
    resp.take_websocket().expect("accepted")
}

fn recv(s: &mut AcceptedSocket) -> WsOut {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(m) = s.outgoing.try_recv() {
            return m;
        }
        assert!(std::time::Instant::now() < deadline, "no frame");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sockets_keep_tags_and_attachments_across_hibernation() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cfg = fast_config();
    cfg.hibernation_timeout = Duration::from_secs(10);
    let rt = runtime(clock.clone(), dir.path(), cfg);
    let id = rt.namespace("room").unwrap().id_from_name("lobby").unwrap();
    let mut alice = join(&rt, "lobby", "alice", "red,blue");
    let mut bob = join(&rt, "lobby", "bob", "blue");
    let ns = rt.namespace("room").unwrap();
    let stub = ns.get(&id).unwrap();
    let count = |q: &str| {
        String::from_utf8(stub.fetch(Request::new("GET", q)).wait().unwrap().body).unwrap()
    };
    assert_eq!(count("/count?tag=blue"), "2");
    assert_eq!(count("/count?tag=red"), "1");
    assert_eq!(count("/count"), "2");

    // Idle past the hibernation timeout: the instance goes, sockets stay.
    clock.advance(11_000);
    assert!(eventually(5, || !rt.is_live(&id)));
    let activations = rt.metrics().activations.load(Ordering::Relaxed);

    // The auto-response is answered without waking the object.
    rt.websocket_message(&id, &alice.socket, WsMessage::Text("ping".into()))
        .unwrap();
    assert_eq!(recv(&mut alice), WsOut::Text("pong".into()));
    assert!(!rt.is_live(&id));
    assert_eq!(
        rt.metrics().activations.load(Ordering::Relaxed),
        activations
    );

    // A real message wakes it, and the attachment and tags survived.
    rt.websocket_message(&id, &bob.socket, WsMessage::Text("hi".into()))
        .unwrap();
    assert_eq!(recv(&mut bob), WsOut::Text("bob[blue]: hi".into()));
    assert!(rt.is_live(&id));
    rt.websocket_message(&id, &alice.socket, WsMessage::Text("yo".into()))
        .unwrap();
    assert_eq!(recv(&mut alice), WsOut::Text("alice[red,blue]: yo".into()));

    // Close reaches the handler and the socket leaves the object.
    rt.websocket_closed(&id, &bob.socket, 1000, "bye");
    assert!(eventually(5, || count("/count") == "1"));
    let _ = &mut bob;
}

#[test]
fn socket_limits_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let rt = runtime(clock, dir.path(), fast_config());
    let ns = rt.namespace("room").unwrap();
    let stub = ns.get(&ns.id_from_name("limits").unwrap()).unwrap();
    let try_join = |tags: String| {
        let mut req = Request::new("GET", &format!("/join?tags={tags}"));
        req.websocket = true;
        stub.fetch(req).wait()
    };
    let eleven = (0..11)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        try_join(eleven).unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
    assert_eq!(
        try_join("x".repeat(257)).unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
    let ten = (0..10)
        .map(|i| format!("t{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(try_join(ten).is_ok());
    assert!(try_join("y".repeat(256)).is_ok());
    let err = stub
        .fetch(Request::new("POST", "/attach-huge"))
        .wait()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
}
