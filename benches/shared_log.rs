//! Many busy objects against one busy object, on the same bucket in the
//! same run, with the shared log and with per-object shipping side by side:
//! 16 client threads each write one commit to a random object of N and
//! wait for it at `Remote` durability (in the bucket), for a fixed time.
//! Prints, per N: acknowledged writes/s, PUTs per 1,000 acknowledged
//! writes (counted by the counting store around the bucket), both as
//! ratios to N = 1 of the same layout, the remote-confirm p50, and the
//! monthly bill at S3 list prices for 1,000 objects writing once a second
//! next to Cloudflare's rows-written price for the same writes.
//!
//! The bucket is `AMBER_BENCH_S3_URL` (moto on loopback in
//! docs/benchmarks.md) or a local directory. Run:
//! `cargo bench --bench shared_log` (`SHARED_LOG_SECS`, default 5 s per run;
//! `SHARED_LOG_NS`, default `1,200,1000`; `SHARED_LOG_LAYOUTS`, `shared` or
//! `per-object`, default both). moto slows down as its bucket fills, so
//! `scripts/bench_shared_log.sh` runs each layout on a fresh moto.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, RestoreOptions, RestoreTarget};
use amber::testing::FaultyStore;
use amber::{BucketConfig, Config, DurabilityLevel, Object, PitrConfig, Store};
use criterion::{criterion_group, criterion_main, Criterion};

const CLIENTS: usize = 16;
/// S3 Standard, per 1,000 PUTs (us-east-1 list price).
const S3_PUT_PER_1000: f64 = 0.005;
/// Durable Objects SQLite storage, rows written, per million.
const CF_ROWS_PER_MILLION: f64 = 1.0;
const SECS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

fn bucket(tag: &str) -> (tempfile::TempDir, Arc<FaultyStore>, Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let inner = match std::env::var("AMBER_BENCH_S3_URL") {
        Ok(url) => {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let (base, q) = url.split_once('?').unwrap_or((&url, ""));
            Bucket::open(&format!("{}/{tag}-{n}?{q}", base.trim_end_matches('/'))).unwrap()
        }
        Err(_) => Bucket::open(&format!("file://{}", dir.path().display())).unwrap(),
    };
    let counting = Arc::new(FaultyStore::counting(inner.store().clone()));
    let b = Bucket::from_store(counting.clone(), inner.layout().clone());
    (dir, counting, b)
}

struct Run {
    writes: u64,
    secs: f64,
    puts: u64,
    p50: Duration,
    /// Restoring `obj0` to its latest commit: (time, GETs + LISTs, its
    /// commits), with the store still open, then from a fresh store after
    /// the writer closed.
    restore_live: (Duration, u64, u64),
    restore_closed: (Duration, u64, u64),
}

fn restore_obj0(
    store: &Store,
    counting: &FaultyStore,
    out: &std::path::Path,
) -> (Duration, u64, u64) {
    let c0 = counting.counts();
    let t = Instant::now();
    let rep = store
        .restore(
            "obj0",
            RestoreTarget::Latest,
            out,
            RestoreOptions::default(),
        )
        .unwrap();
    let took = t.elapsed();
    let c1 = counting.counts();
    (
        took,
        (c1.get - c0.get) + (c1.list - c0.list),
        rep.bookmark.seq(),
    )
}

/// With `paced`, the clients together write `n` commits a second (each
/// object about once a second), the load the monthly bill is priced at;
/// otherwise as fast as the acknowledgements come.
fn run(n: usize, pitr: PitrConfig, secs: u64, paced: bool) -> Run {
    let (_d, counting, b) = bucket(if pitr.shared_log {
        "shared"
    } else {
        "per-object"
    });
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(
        Config::new(data.path())
            .with_bucket(BucketConfig::Bucket(b.clone()))
            .with_durability(DurabilityLevel::Remote)
            .with_pitr(pitr),
    )
    .unwrap();
    // Create and warm every object first, in parallel: creation PUTs
    // (a base snapshot and a manifest each) are not what is measured.
    let objs: Vec<Mutex<Option<Object>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (store, objs) = (&store, &objs);
            s.spawn(move || {
                for i in (c..n).step_by(CLIENTS) {
                    let mut o = store.open_object(&format!("obj{i}")).unwrap();
                    o.put("n", &0u64.to_le_bytes()).unwrap();
                    o.end_turn().unwrap().wait().unwrap();
                    *objs[i].lock().unwrap() = Some(o);
                }
            });
        }
    });
    let stop = AtomicBool::new(false);
    let writes = AtomicU64::new(0);
    let lat = Mutex::new(Vec::new());
    let puts0 = counting.counts().put;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (objs, stop, writes, lat) = (&objs, &stop, &writes, &lat);
            s.spawn(move || {
                let mut x = (c as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut mine = Vec::new();
                let every = Duration::from_secs_f64(CLIENTS as f64 / n as f64);
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    if paced {
                        next += every;
                        if let Some(d) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                    }
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x % n as u64) as usize;
                    let t = Instant::now();
                    let ticket = {
                        let mut g = objs[i].lock().unwrap();
                        let o = g.as_mut().unwrap();
                        let v =
                            u64::from_le_bytes(o.get("n").unwrap().unwrap().try_into().unwrap());
                        o.put("n", &(v + 1).to_le_bytes()).unwrap();
                        o.end_turn().unwrap()
                    };
                    ticket.wait().unwrap();
                    mine.push(t.elapsed());
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                lat.lock().unwrap().extend(mine);
            });
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let secs = t0.elapsed().as_secs_f64();
    let puts = counting.counts().put - puts0;
    let restore_live = restore_obj0(&store, &counting, &data.path().join("r-live"));
    drop(objs);
    drop(store);
    let other = tempfile::tempdir().unwrap();
    let fresh =
        Store::open(Config::new(other.path()).with_bucket(BucketConfig::Bucket(b))).unwrap();
    let restore_closed = restore_obj0(&fresh, &counting, &other.path().join("r-closed"));
    let mut lat = lat.into_inner().unwrap();
    lat.sort();
    let p50 = lat.get(lat.len() / 2).copied().unwrap_or_default();
    Run {
        writes: writes.load(Ordering::Relaxed),
        secs,
        puts,
        p50,
        restore_live,
        restore_closed,
    }
}

fn cfg(shared: bool, flush_ms: u64) -> PitrConfig {
    PitrConfig::default()
        .with_shared_log(shared)
        .with_flush_interval(Duration::from_millis(flush_ms))
}

/// The round trip a remote confirmation cannot beat: one PUT.
fn bare_put_p50() -> Duration {
    use object_store::{path::Path, ObjectStoreExt, PutPayload};
    let (_d, _c, b) = bucket("bare");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lat: Vec<Duration> = (0..200)
        .map(|i| {
            let t = Instant::now();
            let p = Path::from(format!("bare/{i:016x}"));
            rt.block_on(b.store().put(&p, PutPayload::from(vec![7u8; 300])))
                .unwrap();
            t.elapsed()
        })
        .collect();
    lat.sort();
    lat[lat.len() / 2]
}

fn many_objects(c: &mut Criterion) {
    let secs: u64 = std::env::var("SHARED_LOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let ns: Vec<usize> = std::env::var("SHARED_LOG_NS")
        .unwrap_or_else(|_| "1,200,1000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let where_ = std::env::var("AMBER_BENCH_S3_URL")
        .map_or("a local directory", |_| "S3 (AMBER_BENCH_S3_URL)");
    eprintln!("== {CLIENTS} clients, Remote durability, {secs} s per run, bucket: {where_} ==");
    eprintln!(
        "{:<11} {:>6} {:>10} {:>7} {:>14} {:>7} {:>10} {:>14}",
        "layout",
        "objects",
        "writes/s",
        "ratio",
        "PUTs/1k writes",
        "ratio",
        "p50",
        "$/month/1k obj"
    );
    let mut restores = Vec::new();
    let layouts: Vec<bool> = match std::env::var("SHARED_LOG_LAYOUTS").as_deref() {
        Ok("shared") => vec![true],
        Ok("per-object") => vec![false],
        _ => vec![true, false],
    };
    for shared in layouts {
        let layout = if shared { "shared log" } else { "per object" };
        let mut base: Option<(f64, f64)> = None;
        for &n in &ns {
            let r = run(n, cfg(shared, 0), secs, false);
            restores.push((layout, n, r.restore_live, r.restore_closed));
            let rate = r.writes as f64 / r.secs;
            let per_k = r.puts as f64 * 1000.0 / r.writes.max(1) as f64;
            let (b_rate, b_per_k) = *base.get_or_insert((rate, per_k));
            eprintln!(
                "{layout:<11} {n:>6} {rate:>10.0} {:>6.2}x {per_k:>14.1} {:>6.2}x {:>8.2}ms {:>14}",
                rate / b_rate,
                per_k / b_per_k,
                r.p50.as_secs_f64() * 1000.0,
                "",
            );
        }
        // The bill: 1,000 objects each writing about once a second; the
        // shared log also with a 100 ms flush window.
        let flushes: &[u64] = if shared { &[0, 100] } else { &[0] };
        for &flush in flushes {
            let r = run(1000, cfg(shared, flush), secs, true);
            let rate = r.writes as f64 / r.secs;
            let per_k = r.puts as f64 * 1000.0 / r.writes.max(1) as f64;
            // Priced at the nominal 1,000 writes/s. The shared log adds at
            // most one index per busy object per minute, which a run
            // shorter than a minute does not show.
            let index = if shared { 1000.0 / 60.0 } else { 0.0 };
            let puts_per_s = per_k + index;
            let s3 = puts_per_s * SECS_PER_MONTH * S3_PUT_PER_1000 / 1000.0;
            eprintln!(
                "{layout:<11} {:>6} {rate:>10.0} {:>7} {per_k:>14.1} {:>7} {:>8.2}ms {:>14}",
                "1000/s",
                "paced",
                if flush > 0 {
                    format!("+{flush}ms")
                } else {
                    String::new()
                },
                r.p50.as_secs_f64() * 1000.0,
                format!("${s3:.0}"),
            );
        }
    }
    for (layout, n, live, closed) in restores {
        eprintln!(
            "restore obj0 of {n} ({layout}): writer open {:.1}ms {} requests ({} commits); \
             writer closed {:.1}ms {} requests",
            live.0.as_secs_f64() * 1000.0,
            live.1,
            live.2,
            closed.0.as_secs_f64() * 1000.0,
            closed.1,
        );
    }
    eprintln!(
        "one bare PUT of 300 bytes, p50 of 200: {:.2}ms",
        bare_put_p50().as_secs_f64() * 1000.0
    );
    let cf = 1000.0 * SECS_PER_MONTH * CF_ROWS_PER_MILLION / 1e6;
    eprintln!(
        "$/month/1k obj: PUTs at ${S3_PUT_PER_1000} per 1,000 for 1,000 objects writing once a second; \
         Cloudflare's rows-written price for the same writes (one row each): ${cf:.0}"
    );
    let _ = c;
}

criterion_group!(benches, many_objects);
criterion_main!(benches);
