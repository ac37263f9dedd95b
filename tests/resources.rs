//! Resource bounds: memory per open object and per cached byte stays
//! within the configured budgets under load, and file descriptors per open
//! object are bounded, with none leaked when objects close.
//!
//! Measured through `/proc/self/statm` (resident pages) and `/proc/self/fd`,
//! so the tests in this file run one at a time (a process-wide lock) and
//! assert on deltas with generous but meaningful bounds.

use std::sync::Mutex;

use amber::{Config, Object, Store, Tuning, ValueRef};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Resident set size in bytes.
fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

const KIB: usize = 1024;

fn tuning() -> Tuning {
    Tuning {
        page_cache_kib: 256,
        kv_cache_bytes: 64 * KIB,
        ..Tuning::default()
    }
}

/// A turn that touches the object's caches: KV and SQL, reads and writes.
fn load(o: &mut Object, round: u32) {
    if round == 0 {
        o.exec(
            "CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v BLOB)",
            &[],
        )
        .unwrap();
    }
    let v = vec![round as u8; 2000];
    for k in 0..20u32 {
        o.put(&format!("k{round}-{k}"), &v).unwrap();
        o.exec(
            "INSERT OR REPLACE INTO t VALUES (?1, ?2)",
            &[
                ValueRef::Integer((round * 100 + k) as i64),
                ValueRef::Blob(&v),
            ],
        )
        .unwrap();
    }
    o.end_turn().unwrap().wait().unwrap();
    for k in 0..20u32 {
        assert!(o.get(&format!("k{round}-{k}")).unwrap().is_some());
    }
}

#[test]
fn the_kv_cache_stays_within_its_budget_under_load() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 * KIB;
    let store = Store::open(Config::new(dir.path()).with_tuning(tuning())).unwrap();
    let mut o = store.open_object("cache").unwrap();
    let mut peak = 0;
    // 8 MiB written and read back through a 64 KiB cache.
    for round in 0..64u32 {
        for k in 0..32u32 {
            let v = vec![(round ^ k) as u8; 4096];
            o.put(&format!("r{round}-{k}"), &v).unwrap();
        }
        o.end_turn().unwrap().wait().unwrap();
        for k in 0..32u32 {
            let key = format!("r{}-{k}", round / 2);
            assert!(o.get(&key).unwrap().is_some());
        }
        peak = peak.max(o.cache_bytes());
        assert!(
            o.cache_bytes() <= budget,
            "round {round}: {} cached bytes > budget {budget}",
            o.cache_bytes()
        );
    }
    assert!(peak > budget / 2, "the cache was never used: peak {peak}");
}

#[test]
fn memory_per_open_object_is_bounded_by_its_budgets() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let t = tuning();
    let store = Store::open(Config::new(dir.path()).with_tuning(t.clone())).unwrap();
    // Warm up the process (allocator arenas, runtime threads) first.
    {
        let mut o = store.open_object("warm").unwrap();
        load(&mut o, 0);
    }
    let n = 100usize;
    let before = rss();
    let mut objects = Vec::new();
    for i in 0..n {
        let mut o = store.open_object(&format!("obj-{i}")).unwrap();
        for round in 0..3 {
            load(&mut o, round);
        }
        objects.push(o);
    }
    let after = rss();
    let per_object = after.saturating_sub(before) / n as u64;
    // Budget: the page cache and the KV cache, plus fixed overhead (the
    // SQLite connection and schema, statements, amber's state).
    let budget = (t.page_cache_kib as u64 * 1024) + t.kv_cache_bytes as u64 + 512 * 1024;
    eprintln!(
        "{n} open objects: {} KiB resident each (budget {} KiB)",
        per_object / 1024,
        budget / 1024
    );
    assert!(
        per_object <= budget,
        "{} KiB per open object > budget {} KiB",
        per_object / 1024,
        budget / 1024
    );
    for o in &objects {
        assert!(o.cache_bytes() <= t.kv_cache_bytes);
    }
    drop(objects);
}

#[test]
fn file_descriptors_per_object_are_bounded_and_never_leak() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path()).with_tuning(tuning())).unwrap();
    {
        let mut o = store.open_object("warm").unwrap();
        load(&mut o, 0);
    }
    let base = open_fds();
    let n = 64usize;
    let mut objects = Vec::new();
    for i in 0..n {
        let mut o = store.open_object(&format!("fd-{i}")).unwrap();
        load(&mut o, 0);
        objects.push(o);
    }
    let open = open_fds() - base;
    eprintln!(
        "{n} open objects hold {open} fds ({:.1} each)",
        open as f64 / n as f64
    );
    // Measured: the lock file, the database, and three handles on the WAL
    // (SQLite's, the one the syncer fsyncs through, and the one log
    // shipping reads commits from). Five each, whatever the load.
    assert!(open <= 2 * n, "{open} fds for {n} objects");
    drop(objects);
    assert!(
        open_fds() <= base + 2,
        "closing left fds open: {} -> {}",
        base,
        open_fds()
    );

    // Many objects, opened and closed in turn: the count stays flat.
    for i in 0..200usize {
        let mut o = store.open_object(&format!("many-{i}")).unwrap();
        o.put("k", &i.to_le_bytes()).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        drop(o);
        if i % 100 == 99 {
            assert!(open_fds() <= base + 2, "fds leak: {} after {i}", open_fds());
        }
    }
    // And they all reopen with their data.
    for i in (0..200usize).step_by(37) {
        let mut o = store.open_object(&format!("many-{i}")).unwrap();
        assert_eq!(o.get("k").unwrap().unwrap(), i.to_le_bytes());
    }
}
