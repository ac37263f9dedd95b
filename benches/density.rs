//! What many objects cost: the create rate (serially and with 16 clients)
//! against the one-object increment rate of the same runtime in the same
//! run, files and bytes per object locally and in the bucket, start and
//! listing time, memory and fds per live object, and waking.
//!
//! ```sh
//! cargo bench --bench density                          # 20,000 objects
//! AMBER_DENSITY_N=1000000 cargo bench --bench density  # the long form
//! AMBER_DENSITY_BUCKET=none cargo bench --bench density
//! ```
//!
//! `AMBER_DENSITY_DIR` puts the store somewhere other than a temporary
//! directory (a bigger disk for the long form); `AMBER_DENSITY_KEEP_WAL=1`
//! keeps each object's WAL at close (`Tuning::keep_wal_on_close`). Figures and commands go
//! in docs/benchmarks.md.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::runtime::{Request, Runtime, Stub};
use amber::server::classes::counter::Counter;
use amber::{BucketConfig, Config, ObjectListOptions, Store};

const CLIENTS: usize = 16;

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn config(dir: &Path) -> Config {
    let mut c = Config::new(dir);
    // The side-by-side row: WAL kept at close (`Tuning::keep_wal_on_close`).
    c.tuning.keep_wal_on_close = std::env::var_os("AMBER_DENSITY_KEEP_WAL").is_some();
    match std::env::var("AMBER_DENSITY_BUCKET").as_deref() {
        Ok("none") => c.with_bucket(BucketConfig::Disabled),
        _ => c,
    }
}

fn start(dir: &Path) -> Runtime {
    Runtime::builder(Store::open(config(dir)).unwrap())
        .class("counter", Counter::default)
        .start()
        .unwrap()
}

fn stub(rt: &Runtime, name: &str) -> Stub {
    let ns = rt.namespace("counter").unwrap();
    ns.get(&ns.id_from_name(name).unwrap()).unwrap()
}

fn increment(s: &Stub) {
    let r = s.fetch(Request::new("POST", "/increment")).wait().unwrap();
    assert_eq!(r.status, 200);
}

/// Runs `n` requests, `clients` at a time; `f(i)` makes request `i`.
/// Returns requests per second.
fn rate(n: u64, clients: usize, f: impl Fn(u64) + Sync) -> f64 {
    let next = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                f(i);
            });
        }
    });
    n as f64 / t.elapsed().as_secs_f64()
}

/// (files, bytes on disk) under `p`.
fn du(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(p) else {
        return (0, 0);
    };
    let mut out = (0, 0);
    for e in rd.flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            let (f, b) = du(&e.path());
            out.0 += f;
            out.1 += b;
        } else {
            out.0 += 1;
            out.1 += m.blocks() * 512;
        }
    }
    out
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Set (to the store's directory) in the child that measures live objects.
const LIVE_PHASE: &str = "AMBER_DENSITY_LIVE";

/// The child: RSS and fds per live idle object, and waking.
fn live_phase(dir: &Path) {
    let t = Instant::now();
    let rt = start(dir);
    let started = t.elapsed();
    let live = 1_000;
    let stubs: Vec<Stub> = (0..live).map(|i| stub(&rt, &format!("obj-{i}"))).collect();
    let read = |s: &Stub| {
        let r = s.fetch(Request::new("GET", "/read")).wait().unwrap();
        assert_eq!(r.status, 200);
    };
    // Warm the runtime's own structures with one object first.
    read(&stubs[0]);
    rt.hibernate(stubs[0].id()).wait().unwrap();
    let (rss0, fd0) = (rss_bytes(), fds());
    for s in &stubs {
        read(s);
    }
    let (rss1, fd1) = (rss_bytes(), fds());
    println!(
        "live idle object    {:>9.1} KiB RSS   {:.2} fds   (over {live}, page cache included)",
        rss1.saturating_sub(rss0) as f64 / live as f64 / 1024.0,
        fd1.saturating_sub(fd0) as f64 / live as f64
    );
    for s in &stubs {
        rt.hibernate(s.id()).wait().unwrap();
    }
    println!(
        "hibernated object   {:>9.2} fds",
        fds().saturating_sub(fd0) as f64 / live as f64
    );
    let mut wakes = Vec::new();
    for s in stubs.iter().take(500) {
        let t = Instant::now();
        read(s);
        wakes.push(t.elapsed());
        rt.hibernate(s.id()).wait().unwrap();
    }
    println!("wake + read p50     {:>9.0?}", p50(wakes));
    println!("runtime start       {started:>9.1?}   (a fresh process: store open + alarm index)");
}

fn main() {
    // `cargo test --benches` lists; there is nothing to list.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(dir) = std::env::var_os(LIVE_PHASE) {
        return live_phase(Path::new(&dir));
    }
    let n = env_u64("AMBER_DENSITY_N", 20_000);
    let scratch = tempfile::tempdir().unwrap();
    let dir = std::env::var("AMBER_DENSITY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| scratch.path().join("store"));
    let bucket = std::env::var("AMBER_DENSITY_BUCKET").unwrap_or_else(|_| "default".into());
    println!("density: {n} objects, bucket {bucket}, {}", dir.display());

    let rt = start(&dir);
    // Baseline, same runtime, same run: one warm object's increments.
    let one = stub(&rt, "warm");
    increment(&one);
    let base_n = (n / 4).clamp(1_000, 20_000);
    let one_serial = rate(base_n, 1, |_| increment(&one));
    let one_16 = rate(base_n, CLIENTS, |_| increment(&one));
    // Creating objects: a fresh name per request.
    let half = n / 2;
    let serial = rate(half, 1, |i| increment(&stub(&rt, &format!("obj-{i}"))));
    let parallel = rate(n - half, CLIENTS, |i| {
        increment(&stub(&rt, &format!("obj-{}", half + i)))
    });
    println!(
        "create, serial      {serial:>9.0}/s   one-object increment {one_serial:>7.0}/s   ratio {:.2}x",
        serial / one_serial
    );
    println!(
        "create, {CLIENTS} clients  {parallel:>9.0}/s   one-object increment {one_16:>7.0}/s   ratio {:.2}x",
        parallel / one_16
    );

    // Memory and fds of live idle objects, in a fresh process (this one's
    // heap is full of what the creates freed): wake 1,000 of them.
    drop(one);
    drop(rt);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(LIVE_PHASE, &dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));

    // At rest.
    let objects = n + 1;
    let (f, b) = du(&dir.join("objects"));
    println!(
        "local, per object   {:>9.2} files  {:>7.1} KiB   (objects/ only)",
        f as f64 / objects as f64,
        b as f64 / objects as f64 / 1024.0
    );
    let (cf, cb) = ["catalog.db", "catalog.db-wal"]
        .iter()
        .map(|f| du_file(&dir.join(f)))
        .fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1));
    println!(
        "catalog             {cf:>9} files  {:>7.1} B per object",
        cb as f64 / objects as f64
    );
    if bucket != "none" {
        let (bf, bb) = du(&dir.join("bucket"));
        println!(
            "bucket, per object  {:>9.2} files  {:>7.1} KiB",
            bf as f64 / objects as f64,
            bb as f64 / objects as f64 / 1024.0
        );
    }

    // Start and list, on the store as it is now.
    let t = Instant::now();
    let rt = start(&dir);
    let started = t.elapsed();
    let store: Arc<Store> = Arc::new(rt.store().clone());
    let t = Instant::now();
    let first = store
        .list_objects_page(&ObjectListOptions::new().limit(100))
        .unwrap();
    let first_page = t.elapsed();
    let t = Instant::now();
    let all = store.list_objects().unwrap().len();
    let listed = t.elapsed();
    assert_eq!(all as u64, objects);
    assert_eq!(first.len(), 100.min(all));
    println!("runtime start       {started:>9.1?}   (again, in this process)");
    println!("list first page     {first_page:>9.1?}   (100 names)");
    println!("list all            {listed:>9.1?}   ({all} names)");
}

fn du_file(p: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(p) {
        Ok(m) => (1, m.blocks() * 512),
        Err(_) => (0, 0),
    }
}
