//! Cluster mode end to end: three `amber serve --cluster` processes on one
//! S3 bucket (moto in CI, `AMBER_TEST_S3_URL`), each test under its own
//! prefix. A host is SIGKILLed, or SIGSTOPped past its lease and resumed,
//! while a client writes; every write acknowledged with a 200 must be
//! readable afterwards, takeover must be prompt, and a host resumed with
//! a lapsed lease must acknowledge nothing under its old incarnation.
//!
//! Skipped (with a message) when `AMBER_TEST_S3_URL` is unset, unless
//! `AMBER_REQUIRE_S3=1`. On failure the hosts' stderr is printed (the last
//! `AMBER_TEST_CLUSTER_LOG_LINES`, default 200, lines of each) and the
//! temporary directory with their data and full logs is kept;
//! `AMBER_TEST_KEEP_CLUSTER=1` keeps it on success too. The hosts log at
//! `RUST_LOG=info` unless `AMBER_TEST_CLUSTER_LOG` says otherwise.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::cluster::{attempt, read_kv, serial, Attempt, Cluster, HOST_HEADER};

const TTL_MS: u64 = 3000;
/// Per-request client timeout: longer than any sane forwarding timeout.
const REQ_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets a flag when dropped, so background clients stop even when the
/// test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// PUTs `path` = `value` through host `via` until a 200, for at most
/// `within`; returns every attempt, the last being the 200.
fn put_until_ok(
    c: &Cluster,
    via: usize,
    path: &str,
    value: &str,
    within: Duration,
) -> Vec<Attempt> {
    let deadline = Instant::now() + within;
    let mut tries = Vec::new();
    loop {
        let a = attempt(c.addr(via), via, "PUT", path, value, REQ_TIMEOUT);
        let ok = a.ok();
        tries.push(a);
        if ok {
            return tries;
        }
        if Instant::now() >= deadline {
            let t0 = tries[0].sent;
            let log: Vec<String> = tries.iter().map(|a| a.describe(t0)).collect();
            panic!(
                "PUT {path} via h{via}: no 200 within {within:?}:\n{}",
                log.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The incarnation on a 200, which every object reply must carry.
fn incarnation(a: &Attempt) -> String {
    a.served_by()
        .unwrap_or_else(|| panic!("a 200 without {HOST_HEADER}: {a:?}"))
        .to_owned()
}

/// Asserts every acknowledged PUT in `acked` is in `data` with its value.
fn assert_all_present(
    what: &str,
    acked: &[&Attempt],
    data: &BTreeMap<String, String>,
    t0: Instant,
) {
    let mut missing = Vec::new();
    for a in acked {
        let key = a.path.rsplit('/').next().unwrap();
        match data.get(key) {
            Some(v) if *v == a.body => {}
            other => missing.push(format!("{} -> now {other:?}", a.describe(t0))),
        }
    }
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged writes are missing or wrong:\n{}",
        missing.len(),
        acked.len(),
        missing.join("\n")
    );
}

fn tally(attempts: &[Attempt]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for a in attempts {
        let k = match &a.reply {
            Ok(r) => format!("{} from {}", r.status, r.header(HOST_HEADER).unwrap_or("-")),
            Err(e) => format!("error {}", e.split(" (os error").next().unwrap_or(e)),
        };
        *by.entry(k).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{n} x {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn sigkill_of_a_busy_objects_owner_loses_no_acknowledged_write() {
    let _serial = serial();
    let Some(mut c) = Cluster::start("sigkill", 3, TTL_MS) else {
        return;
    };
    let ttl = c.ttl;
    let t0 = Instant::now();

    // Host 1 claims `busy`; writes through host 0 are forwarded to it.
    let claim = put_until_ok(&c, 1, "/kv/busy/claim", "h1", Duration::from_secs(15));
    let claim = claim.last().unwrap().clone();
    let inc1 = incarnation(&claim);
    assert_eq!(
        c.host_of(&inc1),
        Some(1),
        "a PUT to h1 for an unowned object should make h1 the owner, got {inc1}"
    );
    eprintln!("[sigkill] h1 owns busy as {inc1}");

    let log: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let writer = {
        let (log, stop, addr) = (log.clone(), stop.clone(), c.addr(0));
        std::thread::spawn(move || {
            let hard_stop = Instant::now() + Duration::from_secs(90);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < hard_stop {
                let a = attempt(
                    addr,
                    0,
                    "PUT",
                    &format!("/kv/busy/k{i}"),
                    &format!("v{i}"),
                    REQ_TIMEOUT,
                );
                let ok = a.ok();
                log.lock().unwrap().push(a);
                i += 1;
                if !ok {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };

    // Let the writer get going through h0 -> h1: at least 20 forwarded
    // writes and a second of load.
    let writing_since = Instant::now();
    let forwarded = |log: &[Attempt]| {
        log.iter()
            .filter(|a| a.ok() && a.served_by() == Some(inc1.as_str()))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while forwarded(&log.lock().unwrap()) < 20 || writing_since.elapsed() < Duration::from_secs(1) {
        assert!(
            Instant::now() < deadline,
            "writes through h0 were not forwarded to the owner h1: {}",
            tally(&log.lock().unwrap())
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let killed_at = Instant::now();
    c.kill(1);
    eprintln!(
        "[sigkill] SIGKILLed h1 at +{:.3}s",
        (killed_at - t0).as_secs_f64()
    );

    // Wait for the first 200 from a surviving host, then write on a while.
    let budget = ttl + Duration::from_secs(15);
    let first_after = |log: &[Attempt]| {
        log.iter()
            .filter(|a| a.ok() && a.done > killed_at)
            .find(|a| a.served_by().is_some_and(|h| !h.starts_with("h1-")))
            .map(|a| a.done)
    };
    let recovered_at = loop {
        if let Some(t) = first_after(&log.lock().unwrap()) {
            break t;
        }
        if Instant::now() > killed_at + budget + Duration::from_secs(5) {
            stop.store(true, Ordering::SeqCst);
            let l = log.lock().unwrap();
            let tail: Vec<String> = l
                .iter()
                .rev()
                .take(15)
                .rev()
                .map(|a| a.describe(t0))
                .collect();
            panic!(
                "no 200 from a surviving host {:.1}s after SIGKILL of h1; writes after the kill: {}\nlast attempts:\n{}",
                (Instant::now() - killed_at).as_secs_f64(),
                tally(&l.iter().filter(|a| a.sent > killed_at).cloned().collect::<Vec<_>>()),
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let takeover = recovered_at - killed_at;
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread panicked");
    let log = std::mem::take(&mut *log.lock().unwrap());

    let after: Vec<Attempt> = log.iter().filter(|a| a.sent > killed_at).cloned().collect();
    eprintln!(
        "[sigkill] SIGKILL to first 200 from a surviving host: {:.3}s (ttl {:.1}s, budget {:.1}s)",
        takeover.as_secs_f64(),
        ttl.as_secs_f64(),
        budget.as_secs_f64()
    );
    eprintln!("[sigkill] {} writes in all: {}", log.len(), tally(&log));
    eprintln!("[sigkill] of which sent after the kill: {}", tally(&after));

    // Every 200 names who served it; nothing sent after the kill can have
    // been served by the dead incarnation.
    for a in log.iter().filter(|a| a.ok()) {
        let who = incarnation(a);
        assert!(
            c.host_of(&who).is_some(),
            "unknown incarnation {who} on {}",
            a.describe(t0)
        );
    }
    if let Some(a) = after
        .iter()
        .find(|a| a.ok() && a.served_by() == Some(inc1.as_str()))
    {
        panic!(
            "a write sent after h1 was SIGKILLed got a 200 from h1's incarnation: {}",
            a.describe(t0)
        );
    }
    assert!(
        takeover < budget,
        "takeover took {:.3}s, over the {:.1}s budget",
        takeover.as_secs_f64(),
        budget.as_secs_f64()
    );

    // Read back through both survivors: every acknowledged write is there.
    let mut acked: Vec<&Attempt> = log.iter().filter(|a| a.ok()).collect();
    acked.push(&claim);
    let acked_after = acked.iter().filter(|a| a.sent > killed_at).count();
    assert!(
        acked_after > 0,
        "no write after the takeover was acknowledged"
    );
    for via in [0, 2] {
        let (data, reply) = read_kv(c.addr(via), via, "busy", Duration::from_secs(20));
        eprintln!(
            "[sigkill] read via h{via} (served by {:?}): {} keys; {} acknowledged writes ({} after the kill)",
            reply.header(HOST_HEADER),
            data.len(),
            acked.len(),
            acked_after
        );
        assert_ne!(
            reply.header(HOST_HEADER),
            Some(inc1.as_str()),
            "read served by the dead h1"
        );
        assert_all_present(&format!("read via h{via}"), &acked, &data, t0);
        // Nothing is there that was never written.
        for (k, v) in &data {
            let expected = if k == "claim" {
                "h1".to_string()
            } else {
                format!("v{}", k.trim_start_matches('k'))
            };
            assert_eq!(*v, expected, "key {k} has a value never written");
        }
    }
}

/// Scenario 2 (busy): a client writes to h1 back to back, so a request
/// is in flight when SIGSTOP lands.
#[test]
fn sigstopped_owner_is_taken_over_and_acknowledges_nothing_after_sigcont() {
    sigstop_scenario("sigstop", true);
}

/// Scenario 2 with the owner idle when stopped: no write of its own fails
/// when it resumes, so only its lease check can fence it before it answers
/// the requests queued on its socket during the pause.
#[test]
fn sigstopped_idle_owner_acknowledges_nothing_after_sigcont() {
    sigstop_scenario("sigstop-idle", false);
}

/// Host 1 owns `paused`; SIGSTOP it for ttl + 1 s; write through h2 until
/// a 200 (a takeover); queue requests on h1's socket; SIGCONT; write and
/// read through h1 for 3 s. No 200 may carry h1's old incarnation after
/// the pause, reads through h1 see the new owner's writes, and every
/// confirmed write is there when read through h0.
fn sigstop_scenario(tag: &str, busy: bool) {
    let _serial = serial();
    let Some(c) = Cluster::start(tag, 3, TTL_MS) else {
        return;
    };
    let ttl = c.ttl;
    let t0 = Instant::now();
    let mut confirmed: Vec<Attempt> = Vec::new();

    // Host 1 claims `paused`.
    let claim = put_until_ok(&c, 1, "/kv/paused/p0", "p0", Duration::from_secs(15));
    let claim = claim.last().unwrap().clone();
    let inc1 = incarnation(&claim);
    assert_eq!(
        c.host_of(&inc1),
        Some(1),
        "a PUT to h1 for an unowned object should make h1 the owner, got {inc1}"
    );
    eprintln!("[{tag}] h1 owns paused as {inc1}");
    confirmed.push(claim);
    for i in 1..5 {
        let a = put_until_ok(
            &c,
            1,
            &format!("/kv/paused/p{i}"),
            &format!("p{i}"),
            Duration::from_secs(10),
        );
        confirmed.push(a.last().unwrap().clone());
    }

    // Busy: a client writes to h1 back to back, so a request is in flight
    // when SIGSTOP lands; it is told to stop before SIGCONT, so its last
    // request is the one that spans the pause.
    let log: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let inflight = busy.then(|| {
        let (log, stop, addr) = (log.clone(), stop.clone(), c.addr(1));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) && i < 100_000 {
                // Long enough to outlast the pause and the takeover.
                let a = attempt(
                    addr,
                    1,
                    "PUT",
                    &format!("/kv/paused/f{i}"),
                    &format!("f{i}"),
                    Duration::from_secs(45),
                );
                let ok = a.ok();
                log.lock().unwrap().push(a);
                i += 1;
                if !ok {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    });
    if busy {
        let deadline = Instant::now() + Duration::from_secs(10);
        while log.lock().unwrap().iter().filter(|a| a.ok()).count() < 5 {
            assert!(
                Instant::now() < deadline,
                "h1 does not acknowledge writes: {}",
                tally(&log.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    let stopped_at = Instant::now();
    c.signal(1, "STOP");
    eprintln!(
        "[{tag}] SIGSTOPped h1 at +{:.3}s",
        (stopped_at - t0).as_secs_f64()
    );
    std::thread::sleep(ttl + Duration::from_secs(1));

    // Write through h2 until one succeeds: h2 or h0 has taken over.
    let budget = ttl + Duration::from_secs(15);
    let takeover_writes = put_until_ok(&c, 2, "/kv/paused/a0", "a0", budget);
    let first = takeover_writes.last().unwrap().clone();
    let new_owner = incarnation(&first);
    eprintln!(
        "[{tag}] first 200 through h2 {:.3}s after SIGSTOP ({} tries: {}), served by {new_owner}",
        (first.done - stopped_at).as_secs_f64(),
        takeover_writes.len(),
        tally(&takeover_writes)
    );
    assert_ne!(
        new_owner,
        inc1,
        "a 200 from the stopped h1: {}",
        first.describe(t0)
    );
    assert!(
        matches!(c.host_of(&new_owner), Some(0 | 2)),
        "takeover by an unexpected incarnation {new_owner}"
    );
    confirmed.push(first);
    for i in 1..5 {
        let a = put_until_ok(
            &c,
            2,
            &format!("/kv/paused/a{i}"),
            &format!("a{i}"),
            Duration::from_secs(10),
        );
        let a = a.last().unwrap().clone();
        assert_ne!(
            incarnation(&a),
            inc1,
            "a 200 from the stopped h1: {}",
            a.describe(t0)
        );
        confirmed.push(a);
    }
    // h1 cannot answer while stopped (a reply already on its way when the
    // signal landed may arrive a little after).
    {
        let l = log.lock().unwrap();
        let odd: Vec<String> = l
            .iter()
            .filter(|a| a.done > stopped_at + Duration::from_millis(500) && a.ok())
            .map(|a| a.describe(t0))
            .collect();
        assert!(
            odd.is_empty(),
            "h1 answered 200 while stopped:\n{}",
            odd.join("\n")
        );
    }

    // Requests queued on h1's socket while it is stopped: the old
    // incarnation sees them the moment it resumes, before its lease
    // renewer has run.
    let queued: Vec<_> = (0..5)
        .map(|j| {
            let addr = c.addr(1);
            let (method, path, body) = if j < 3 {
                ("PUT", format!("/kv/paused/q{j}"), format!("q{j}"))
            } else {
                ("GET", "/kv/paused/a4".to_string(), String::new())
            };
            std::thread::spawn(move || {
                attempt(addr, 1, method, &path, &body, Duration::from_secs(30))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    // Resume h1. Its client stops after the request it has in flight.
    stop.store(true, Ordering::SeqCst);
    let cont_at = Instant::now();
    c.signal(1, "CONT");
    eprintln!(
        "[{tag}] SIGCONT to h1 at +{:.3}s ({:.3}s after SIGSTOP)",
        (cont_at - t0).as_secs_f64(),
        (cont_at - stopped_at).as_secs_f64()
    );

    // For a while, write to h1 directly, and read back the last write
    // confirmed by the new owner: a 200 from the old incarnation, or a
    // stale read, would mean h1 still acts as the owner.
    let mut direct = Vec::new();
    let mut reads = Vec::new();
    let mut i = 0;
    while Instant::now() < cont_at + Duration::from_secs(3) {
        direct.push(attempt(
            c.addr(1),
            1,
            "PUT",
            &format!("/kv/paused/c{i}"),
            &format!("c{i}"),
            REQ_TIMEOUT,
        ));
        reads.push(attempt(
            c.addr(1),
            1,
            "GET",
            "/kv/paused/a4",
            "",
            REQ_TIMEOUT,
        ));
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    for q in queued {
        let a = q.join().expect("queued request thread panicked");
        eprintln!("[{tag}] queued during the pause: {}", a.describe(t0));
        if a.method == "PUT" {
            direct.push(a);
        } else {
            reads.push(a);
        }
    }
    if let Some(t) = inflight {
        t.join().expect("in-flight client panicked");
    }
    let inflight_log = std::mem::take(&mut *log.lock().unwrap());
    for a in inflight_log
        .iter()
        .filter(|a| a.sent < stopped_at && a.done > stopped_at)
    {
        eprintln!(
            "[{tag}] request in flight across the pause: {}",
            a.describe(t0)
        );
    }
    if busy {
        eprintln!("[{tag}] h1's busy client: {}", tally(&inflight_log));
    }
    eprintln!("[{tag}] writes to h1 after SIGCONT: {}", tally(&direct));
    eprintln!(
        "[{tag}] reads of a4 from h1 after SIGCONT: {}",
        tally(&reads)
    );

    for a in direct.iter().chain(reads.iter()).filter(|a| a.ok()) {
        let who = incarnation(a);
        assert_ne!(
            who,
            inc1,
            "after SIGCONT h1 answered 200 under its old incarnation: {}",
            a.describe(t0)
        );
        assert!(
            c.host_of(&who).is_some(),
            "unknown incarnation {who}: {}",
            a.describe(t0)
        );
    }
    for a in reads
        .iter()
        .filter(|a| a.status() == Some(200) || a.status() == Some(404))
    {
        let r = a.reply.as_ref().unwrap();
        assert!(
            r.status == 200 && r.body == b"a4",
            "a read through h1 after SIGCONT missed the write a4 confirmed by {new_owner}: {}",
            a.describe(t0)
        );
    }
    // The request in flight across the pause counts if it got a 200,
    // whoever answered it: then it must be readable like any other.
    confirmed.extend(inflight_log.iter().filter(|a| a.ok()).cloned());
    confirmed.extend(direct.iter().filter(|a| a.ok()).cloned());

    // Every confirmed write is there, read through h0.
    let (data, reply) = read_kv(c.addr(0), 0, "paused", Duration::from_secs(20));
    eprintln!(
        "[{tag}] read via h0 (served by {:?}): {} keys; {} confirmed writes",
        reply.header(HOST_HEADER),
        data.len(),
        confirmed.len()
    );
    assert_ne!(
        reply.header(HOST_HEADER),
        Some(inc1.as_str()),
        "final read served by h1's old incarnation"
    );
    let refs: Vec<&Attempt> = confirmed.iter().collect();
    assert_all_present("read via h0", &refs, &data, t0);
    for (k, v) in &data {
        assert_eq!(k, v, "key {k} has a value never written");
    }
}

/// After scenario 1: the killed host comes back on the same data
/// directory, which holds the object as it was when the host died. It
/// must forward to the new owner, and when that owner leaves (SIGTERM
/// deletes its lease, so no TTL wait) and the restarted host takes the
/// object back, it must restore from the bucket, not resume from its stale
/// local files: writes made while it was dead are there.
#[test]
fn a_restarted_host_takes_an_object_back_from_the_bucket_not_its_stale_files() {
    let _serial = serial();
    let Some(mut c) = Cluster::start("restart", 3, TTL_MS) else {
        return;
    };
    let tag = "restart";
    let t0 = Instant::now();
    let mut confirmed: Vec<Attempt> = Vec::new();
    let put = |c: &Cluster, via: usize, key: &str, within: Duration| -> Attempt {
        let a = put_until_ok(c, via, &format!("/kv/back/{key}"), key, within);
        a.last().unwrap().clone()
    };

    // h1 owns `back` and has 10 writes in its local files.
    let first = put(&c, 1, "r0", Duration::from_secs(15));
    let inc1 = incarnation(&first);
    assert_eq!(c.host_of(&inc1), Some(1), "h1 should own back, got {inc1}");
    confirmed.push(first);
    for i in 1..10 {
        confirmed.push(put(&c, 1, &format!("r{i}"), Duration::from_secs(10)));
    }

    // SIGKILL h1; h0 takes over and gets 10 more writes.
    let killed_at = Instant::now();
    c.kill(1);
    let a = put(&c, 0, "s0", c.ttl + Duration::from_secs(15));
    let inc0 = incarnation(&a);
    eprintln!(
        "[{tag}] SIGKILLed h1 ({inc1}); {inc0} took over after {:.3}s",
        (a.done - killed_at).as_secs_f64()
    );
    assert_ne!(c.host_of(&inc0), Some(1));
    confirmed.push(a);
    for i in 1..10 {
        confirmed.push(put(&c, 0, &format!("s{i}"), Duration::from_secs(10)));
    }
    let owner = c.host_of(&inc0).unwrap();

    // h1 restarts on its old files, under a new incarnation: its requests
    // for `back` go to the live owner.
    c.restart(1);
    let (data, reply) = read_kv(c.addr(1), 1, "back", Duration::from_secs(20));
    eprintln!(
        "[{tag}] restarted h1; read through it served by {:?}: {} keys",
        reply.header(HOST_HEADER),
        data.len()
    );
    assert_eq!(
        reply.header(HOST_HEADER),
        Some(inc0.as_str()),
        "a read through the restarted h1 was not served by the owner"
    );
    let refs: Vec<&Attempt> = confirmed.iter().collect();
    assert_all_present("read through the restarted h1", &refs, &data, t0);

    // The owner leaves gracefully; the restarted h1 takes `back` on the
    // next request, without waiting for a TTL.
    let left_at = Instant::now();
    let st = c.terminate(owner, 30);
    eprintln!(
        "[{tag}] SIGTERM to h{owner}: exited {st} after {:.3}s",
        left_at.elapsed().as_secs_f64()
    );
    assert!(
        st.success(),
        "h{owner} did not exit cleanly on SIGTERM: {st}"
    );
    let left_at = Instant::now();
    let tries = put_until_ok(&c, 1, "/kv/back/t0", "t0", c.ttl + Duration::from_secs(15));
    let a = tries.last().unwrap().clone();
    let took = a.done - left_at;
    let new_inc1 = incarnation(&a);
    eprintln!(
        "[{tag}] first 200 through h1 {:.3}s after h{owner} exited ({} tries: {}), served by {new_inc1}",
        took.as_secs_f64(),
        tries.len(),
        tally(&tries)
    );
    assert!(
        matches!(c.host_of(&new_inc1), Some(i) if i != owner),
        "served by {new_inc1}, which should have left"
    );
    assert_ne!(
        new_inc1, inc1,
        "h1 answered under its incarnation from before the SIGKILL"
    );
    assert!(
        took < c.ttl,
        "taking the object of a host that left took {:.3}s, not under the {:.1}s TTL",
        took.as_secs_f64(),
        c.ttl.as_secs_f64()
    );
    confirmed.push(a);

    // Everything is there, including what h0 wrote while h1 was dead.
    let survivor = if owner == 0 { 2 } else { 0 };
    for via in [1, survivor] {
        let (data, reply) = read_kv(c.addr(via), via, "back", Duration::from_secs(20));
        eprintln!(
            "[{tag}] read through h{via} served by {:?}: {} keys; {} confirmed writes",
            reply.header(HOST_HEADER),
            data.len(),
            confirmed.len()
        );
        let refs: Vec<&Attempt> = confirmed.iter().collect();
        assert_all_present(&format!("read through h{via}"), &refs, &data, t0);
        for (k, v) in &data {
            assert_eq!(k, v, "key {k} has a value never written");
        }
    }
}
