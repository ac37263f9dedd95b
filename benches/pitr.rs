//! Log shipping and restore, each against a baseline measured in the same
//! run on the same bucket:
//! - remote confirmation (put, end_turn, wait at Remote durability) against
//!   one bare PUT of a segment-sized object;
//! - restore of a database against the machine's limit for the same bytes:
//!   GET every file, zstd-decode, write;
//! - PUTs per object under sustained writes (printed).
//!
//! The bucket is `AMBER_BENCH_S3_URL` (moto on loopback in docs/benchmarks.md)
//! or a local directory. Run: `cargo bench --bench pitr`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, RestoreOptions, RestoreTarget};
use amber::{BucketConfig, Config, DurabilityLevel, Store};
use criterion::{criterion_group, criterion_main, Criterion};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

fn bucket(tag: &str) -> (tempfile::TempDir, Bucket) {
    let dir = tempfile::tempdir().unwrap();
    let b = match std::env::var("AMBER_BENCH_S3_URL") {
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
    (dir, b)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn remote_confirm(c: &mut Criterion) {
    let (_d, b) = bucket("confirm");
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(
        Config::new(data.path())
            .with_bucket(BucketConfig::Bucket(b.clone()))
            .with_durability(DurabilityLevel::Remote),
    )
    .unwrap();
    let mut o = store.open_object("confirm").unwrap();
    let rt = rt();
    let raw: Arc<dyn ObjectStore> = b.store().clone();
    let mut g = c.benchmark_group("remote_confirm");
    g.sample_size(30).measurement_time(Duration::from_secs(6));
    let mut n = 0u64;
    // A segment for one small commit is about 300 bytes.
    let body = noise(1, 300);
    g.bench_function("bare_put", |bch| {
        bch.iter(|| {
            n += 1;
            let p = Path::from(format!("bare/{n:016x}"));
            rt.block_on(raw.put(&p, PutPayload::from(body.clone())))
                .unwrap();
        })
    });
    g.bench_function("amber_put_end_turn_wait", |bch| {
        bch.iter(|| {
            n += 1;
            o.put("counter", &n.to_le_bytes()).unwrap();
            o.end_turn().unwrap().wait().unwrap()
        })
    });
    g.finish();
}

fn restore(c: &mut Criterion) {
    let (_d, b) = bucket("restore");
    let data = tempfile::tempdir().unwrap();
    let store =
        Store::open(Config::new(data.path()).with_bucket(BucketConfig::Bucket(b.clone()))).unwrap();
    let mut o = store.open_object("big").unwrap();
    // 16 MiB of half-compressible rows over 256 commits.
    o.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)", &[])
        .unwrap();
    for i in 0..256u64 {
        let mut v = noise(i, 64 * 1024);
        v[32 * 1024..].fill(0);
        o.exec(
            "INSERT INTO t (v) VALUES (?1)",
            &[amber::ValueRef::Blob(&v)],
        )
        .unwrap();
        o.end_turn().unwrap();
    }
    o.sync().unwrap().wait().unwrap();
    let latest = o.current_bookmark();
    drop(o);
    drop(store);
    let store =
        Store::open(Config::new(data.path()).with_bucket(BucketConfig::Bucket(b.clone()))).unwrap();
    let h = store.history("big").unwrap();
    let keys: Vec<Path> = h
        .epochs
        .iter()
        .flat_map(|e| {
            e.snapshots
                .iter()
                .map(|s| s.key.clone())
                .chain(e.segments.iter().map(|s| s.key.clone()))
        })
        .collect();
    let total: u64 = h
        .epochs
        .iter()
        .flat_map(|e| {
            e.snapshots
                .iter()
                .map(|s| s.size)
                .chain(e.segments.iter().map(|s| s.size))
        })
        .sum();
    eprintln!(
        "restore bench: {} files, {} bytes in the bucket, target {latest}",
        keys.len(),
        total
    );
    let rt = rt();
    let raw: Arc<dyn ObjectStore> = b.store().clone();
    let mut g = c.benchmark_group("restore");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(criterion::Throughput::Bytes(total));
    let mut k = 0u64;
    // The limit: GET the same files, zstd-decode the same volume of pages
    // (one frame holding exactly the pages those files carry), and write
    // it out. Nothing amber-specific is timed.
    let mut raw_pages = Vec::new();
    for key in &keys {
        let bytes = rt.block_on(async { raw.get(key).await.unwrap().bytes().await.unwrap() });
        if let Ok(s) = amber::pitr::decode_snapshot(&bytes) {
            raw_pages.extend_from_slice(&s.image);
        } else {
            for r in amber::pitr::decode_segment(&bytes).unwrap().records {
                raw_pages.extend_from_slice(r.page_data());
            }
        }
    }
    let frame = zstd::bulk::compress(&raw_pages, 3).unwrap();
    eprintln!("restore bench: {} bytes of pages", raw_pages.len());
    g.bench_function("limit_fetch_decode_write", |bch| {
        bch.iter(|| {
            use std::io::Write;
            k += 1;
            let out = data.path().join(format!("limit-{k}"));
            let mut f = std::fs::File::create(&out).unwrap();
            for key in &keys {
                let bytes =
                    rt.block_on(async { raw.get(key).await.unwrap().bytes().await.unwrap() });
                std::hint::black_box(&bytes);
            }
            let pages = zstd::bulk::decompress(&frame, raw_pages.len()).unwrap();
            f.write_all(&pages).unwrap();
            f.sync_all().unwrap();
            std::fs::remove_file(&out).unwrap();
        })
    });
    g.bench_function("amber_restore", |bch| {
        bch.iter(|| {
            k += 1;
            let out = data.path().join(format!("r-{k}"));
            let opts = RestoreOptions {
                prefetch: 8,
                ..Default::default()
            };
            let rep = store
                .restore("big", RestoreTarget::Bookmark(latest), &out, opts)
                .unwrap();
            assert_eq!(rep.bookmark, latest);
            std::fs::remove_file(&out).unwrap();
        })
    });
    g.finish();
}

fn puts_per_object(c: &mut Criterion) {
    let (_d, b) = bucket("sustained");
    let data = tempfile::tempdir().unwrap();
    let store =
        Store::open(Config::new(data.path()).with_bucket(BucketConfig::Bucket(b.clone()))).unwrap();
    let mut o = store.open_object("busy").unwrap();
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        o.put("k", &commits.to_le_bytes()).unwrap();
        o.end_turn().unwrap();
        commits += 1;
    }
    o.sync().unwrap().wait().unwrap();
    let secs = start.elapsed().as_secs_f64();
    drop(o);
    let h = store.history("busy").unwrap();
    let puts: usize = h.epochs.iter().map(|e| e.segments.len()).sum();
    eprintln!(
        "sustained writes: {commits} commits in {secs:.1} s = {:.0} commits/s, {puts} segment PUTs = {:.1} PUTs/s for one object ({:.1} commits per PUT)",
        commits as f64 / secs,
        puts as f64 / secs,
        commits as f64 / puts.max(1) as f64
    );
    let _ = c;
}

criterion_group!(benches, remote_confirm, restore, puts_per_object);
criterion_main!(benches);
