//! Runtime latencies: waking a hibernated object (open its database, start
//! its instance, run one read turn), against the same request to a live
//! object. Target: wake p50 under 1 ms.
//!
//! Run: `cargo bench --bench runtime`. Besides criterion's report, it
//! prints p50/p90/p99 over individual wakes, since criterion's estimates are
//! of per-iteration means.

use std::time::{Duration, Instant};

use amber::runtime::{Request, Runtime, Stub};
use amber::server::classes::counter::Counter;
use amber::{Config, Store};
use criterion::{criterion_group, Criterion};

fn setup() -> (tempfile::TempDir, Runtime, Stub) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let rt = Runtime::builder(store)
        .class("counter", Counter::default)
        .start()
        .unwrap();
    let ns = rt.namespace("counter").unwrap();
    let stub = ns.get(&ns.id_from_name("bench").unwrap()).unwrap();
    // Create the table and a value, so later wakes only read.
    stub.fetch(Request::new("POST", "/increment"))
        .wait()
        .unwrap();
    (dir, rt, stub)
}

fn read(stub: &Stub) {
    let r = stub.fetch(Request::new("GET", "/read")).wait().unwrap();
    assert_eq!(r.status, 200);
}

fn wake_once(rt: &Runtime, stub: &Stub) -> Duration {
    rt.hibernate(stub.id()).wait().unwrap();
    assert!(!rt.is_live(stub.id()));
    let t = Instant::now();
    read(stub);
    t.elapsed()
}

fn percentiles() {
    let (_dir, rt, stub) = setup();
    for _ in 0..200 {
        wake_once(&rt, &stub);
    }
    let mut wakes: Vec<Duration> = (0..2000).map(|_| wake_once(&rt, &stub)).collect();
    wakes.sort();
    let mut live: Vec<Duration> = (0..2000)
        .map(|_| {
            let t = Instant::now();
            read(&stub);
            t.elapsed()
        })
        .collect();
    live.sort();
    let p = |v: &[Duration], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    for (name, v) in [
        ("wake from hibernation", &wakes),
        ("request to live object", &live),
    ] {
        println!(
            "{name:>24}: p50 {:>8.1?}  p90 {:>8.1?}  p99 {:>8.1?}  (n={})",
            p(v, 0.5),
            p(v, 0.9),
            p(v, 0.99),
            v.len()
        );
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Resident memory per live, idle counter object: RSS growth while 1,000
/// new objects are created and left live, divided by 1,000. Includes each
/// object's SQLite connection, its (small) page cache and schema, the
/// instance, and the runtime's slot.
fn memory_per_object() {
    let (_dir, rt, _) = setup();
    let ns = rt.namespace("counter").unwrap();
    let stubs: Vec<Stub> = (0..1000)
        .map(|i| ns.get(&ns.id_from_name(&format!("m{i}")).unwrap()).unwrap())
        .collect();
    let before = rss_bytes();
    for s in &stubs {
        read(s);
    }
    let after = rss_bytes();
    println!(
        "{:>24}: {:.1} KiB per live idle object ({} live)",
        "memory",
        (after.saturating_sub(before)) as f64 / 1000.0 / 1024.0,
        rt.live_objects()
    );
}

fn bench(c: &mut Criterion) {
    let (_dir, rt, stub) = setup();
    let mut g = c.benchmark_group("runtime");
    g.bench_function("wake_from_hibernation", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| wake_once(&rt, &stub)).sum())
    });
    g.bench_function("request_live_object", |b| b.iter(|| read(&stub)));
    g.finish();
}

criterion_group!(benches, bench);

fn main() {
    percentiles();
    memory_per_object();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
