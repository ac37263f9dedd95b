//! Crash loop at `Remote` durability: a child process writes SQL and KV
//! turns to an object whose bucket is a local directory (`file://`), and
//! reports each turn only after its ticket resolved, which at `Remote`
//! means "in the bucket". The parent kills it with SIGKILL at a random
//! moment, then throws the whole local data directory away and works from
//! the bucket alone:
//! - a clean store restores the latest state: every acknowledged turn is
//!   there, every turn is all-or-nothing, `integrity_check` passes;
//! - `Store::verify` finds every CRC and the log's continuity sound;
//! - the restored file becomes the next round's local database (what a
//!   user does after losing a disk), and the child carries on from it.
//!
//! `AMBER_CRASH_ROUNDS` (default 100) and `AMBER_CRASH_SEED` control a run.

#[path = "support/child.rs"]
mod child;
mod harness;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use amber::pitr::{RestoreOptions, RestoreTarget};
use amber::testing::SplitMix;
use amber::{BucketConfig, Config, DurabilityLevel, Store, Tuning, ValueRef};
use harness::restored::read_db;

/// The child's role variable: `<data dir>|<bucket URL>`.
const CHILD: &str = "AMBER_CRASH_REMOTE_CHILD";

fn config(dir: &Path, bucket_url: &str) -> Config {
    let mut cfg = Config::new(dir)
        .with_bucket(BucketConfig::Url(bucket_url.to_string()))
        .with_durability(DurabilityLevel::Remote)
        .with_tuning(Tuning {
            // Small, so checkpoints happen under the knife too.
            checkpoint_pages: 64,
            ..Tuning::default()
        });
    // Snapshots as soon as the log outgrows the database.
    cfg.pitr.snapshot_min_interval = Duration::ZERO;
    cfg.pitr.retry_base = Duration::from_millis(5);
    cfg.sync_threads = 1;
    cfg
}

fn value(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 5000) as usize;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

/// The writer. Runs only in the child process.
#[test]
fn crash_remote_child_writer() {
    let Some(spec) = child::role(CHILD) else {
        return;
    };
    let (dir, url) = spec.split_once('|').unwrap();
    let store = Store::open(config(Path::new(dir), url)).unwrap();
    let mut o = store.open_object("crash").unwrap();
    o.exec(
        "CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, body BLOB)",
        &[],
    )
    .unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let mut next = o
        .exec("SELECT coalesce(max(i), 0) + 1 FROM t", &[])
        .unwrap()
        .one()
        .unwrap()
        .get(0)
        .unwrap()
        .as_i64()
        .unwrap() as u64;
    let mut out = std::io::stdout().lock();
    loop {
        // A few turns in flight, then wait for the last ticket: at Remote
        // it covers the earlier ones too.
        let batch = 1 + next % 3;
        let mut ticket = None;
        let mut ids = Vec::new();
        for _ in 0..batch {
            let i = next;
            next += 1;
            let v = value(i);
            o.put(&format!("k{}", i % 50), &v).unwrap();
            o.exec(
                "INSERT INTO t (i, body) VALUES (?1, ?2)",
                &[ValueRef::Integer(i as i64), ValueRef::Blob(&v)],
            )
            .unwrap();
            ids.push(i);
            ticket = Some(o.end_turn().unwrap());
        }
        ticket.unwrap().wait().unwrap();
        for i in ids {
            writeln!(out, "{i}").unwrap();
        }
        out.flush().unwrap();
    }
}

/// Puts a restored database file where the store keeps the object, in a
/// fresh data directory: the local state rebuilt from the bucket alone.
fn install(data: &Path, url: &str, restored: &Path) {
    let store = Store::open(config(data, url)).unwrap();
    let hex = store.id_from_name("crash").unwrap().to_hex();
    let obj_dir = data.join("objects").join(&hex[..2]).join(&hex);
    std::fs::create_dir_all(&obj_dir).unwrap();
    std::fs::copy(restored, obj_dir.join("db")).unwrap();
}

#[test]
fn kill_9_at_remote_durability_loses_nothing_the_bucket_acknowledged() {
    if child::in_child(CHILD) {
        return;
    }
    let rounds: usize = std::env::var("AMBER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("AMBER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = SplitMix::new(seed);
    let root = tempfile::tempdir().unwrap();
    let bucket_dir = root.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    let started = Instant::now();
    let mut acked_max = 0u64;
    let mut acked_count = 0usize;
    let mut next_from: Option<std::path::PathBuf> = None;
    for round in 0..rounds {
        let data = root.path().join(format!("data-{round}"));
        if let Some(prev) = &next_from {
            install(&data, &url, prev);
        }
        let writer = child::Command::test("crash_remote_child_writer")
            .env(CHILD, format!("{}|{url}", data.display()))
            .spawn();
        std::thread::sleep(Duration::from_millis(100 + rng.below(300)));
        let a = writer.kill_9().numbers();
        acked_count += a.len();
        acked_max = acked_max.max(a.iter().copied().max().unwrap_or(0));

        // The local disk is gone.
        std::fs::remove_dir_all(&data).unwrap();
        if let Some(prev) = next_from.take() {
            let _ = std::fs::remove_file(prev);
        }

        // From the bucket alone, with a store that never saw the object.
        let clean_dir = tempfile::tempdir().unwrap();
        let clean = Store::open(config(clean_dir.path(), &url)).unwrap();
        let out = root.path().join(format!("restored-{round}"));
        let rep = match clean.restore(
            "crash",
            RestoreTarget::Latest,
            &out,
            RestoreOptions::default(),
        ) {
            Ok(rep) => rep,
            // Killed before the object's first snapshot landed: nothing
            // acknowledged, nothing to restore, the next round starts over.
            Err(e) if acked_max == 0 && clean.history("crash").unwrap().latest().is_none() => {
                eprintln!("round {round}: nothing in the bucket yet ({e})");
                next_from = None;
                continue;
            }
            Err(e) => panic!("round {round}: restore: {e}"),
        };
        next_from = Some(out.clone());
        assert!(!rep.partial, "round {round}: {rep:?}");
        let st = read_db(&out).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(st.seq, rep.bookmark.seq(), "round {round}");
        // Rows are contiguous, each turn complete (row i and its key).
        for (n, (i, body)) in st.rows.iter().enumerate() {
            assert_eq!(*i, n as i64 + 1, "round {round}: gap before row {i}");
            assert_eq!(body, &value(*i as u64), "round {round}: row {i}");
        }
        let max = st.rows.last().map_or(0, |r| r.0 as u64);
        for (k, v) in &st.kv {
            let i: u64 = k[1..].parse().unwrap();
            // The newest row i with this key's residue wrote it.
            let last = (1..=max).rev().find(|j| j % 50 == i).unwrap();
            assert_eq!(v, &value(last), "round {round}: key {k}");
        }
        assert_eq!(st.kv.len() as u64, max.min(50), "round {round}");
        assert!(
            acked_max <= max,
            "round {round}: acknowledged turn {acked_max} lost (bucket has {max})"
        );
        let v = clean.verify("crash").unwrap();
        assert!(v.is_ok(), "round {round}: verify: {v:?}");
    }
    assert!(acked_count > 0, "the writer never acknowledged anything");
    eprintln!(
        "{rounds} rounds in {:?}: {acked_count} acknowledged turns, newest {acked_max}",
        started.elapsed()
    );
}
