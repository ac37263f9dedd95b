//! Point-in-time recovery, run against every bucket backend: a shared
//! in-memory store, a local directory, and (when `AMBER_TEST_S3_URL` is
//! set, as CI does with moto) a real S3-compatible server.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use amber::pitr::{Bookmark, Bucket, RestoreOptions, RestoreTarget};
use amber::sqlite::Connection;
use amber::{BucketConfig, Config, DurabilityLevel, ErrorKind, ManualClock, Store, Value};

/// A fresh, empty bucket of each available kind.
fn backends(tag: &str) -> Vec<(String, tempfile::TempDir, Bucket)> {
    let mut out = Vec::new();
    let mem = Bucket::open("memory://").unwrap();
    out.push(("memory".to_string(), tempfile::tempdir().unwrap(), mem));
    let dir = tempfile::tempdir().unwrap();
    let file = Bucket::open(&format!("file://{}", dir.path().display())).unwrap();
    out.push(("file".to_string(), dir, file));
    if let Ok(url) = std::env::var("AMBER_TEST_S3_URL") {
        // A unique prefix per test run keeps tests apart in one bucket.
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let u = format!("{}/{tag}-{n}?{query}", base.trim_end_matches('/'));
        out.push((
            "s3".to_string(),
            tempfile::tempdir().unwrap(),
            Bucket::open(&u).unwrap(),
        ));
    } else {
        assert!(
            std::env::var("AMBER_REQUIRE_S3").is_err(),
            "AMBER_REQUIRE_S3 is set but AMBER_TEST_S3_URL is not"
        );
        eprintln!("AMBER_TEST_S3_URL unset: skipping the S3 backend for {tag}");
    }
    out
}

fn open_store(
    dir: &Path,
    bucket: &Bucket,
    clock: Option<Arc<ManualClock>>,
    level: DurabilityLevel,
) -> Store {
    let mut cfg = Config::new(dir)
        .with_bucket(BucketConfig::Bucket(bucket.clone()))
        .with_durability(level);
    if let Some(c) = clock {
        cfg = cfg.with_clock(c);
    }
    Store::open(cfg).unwrap()
}

/// Everything observable in a restored database file: KV pairs, rows of
/// table t, and the alarm.
fn read_file(path: &Path) -> (BTreeMap<String, Vec<u8>>, Vec<i64>, Option<i64>, u64) {
    // A private prefix so the reserved tables are readable here.
    let conn = Connection::open(path, "\u{1}none", vec!["integrity_check".into()]).unwrap();
    let mut kv = BTreeMap::new();
    let (st, _) = conn
        .prepare_next("SELECT key, value FROM _amber_kv", false)
        .unwrap();
    let mut st = st.unwrap();
    while st.step().unwrap() {
        kv.insert(
            String::from_utf8(st.column_bytes(0)).unwrap(),
            st.column_bytes(1),
        );
    }
    drop(st);
    let mut rows = Vec::new();
    if let (Some(mut st), _) = conn
        .prepare_next("SELECT x FROM t ORDER BY x", false)
        .unwrap_or((None, 0))
    {
        while st.step().unwrap() {
            rows.push(st.column_i64(0));
        }
    }
    let (st, _) = conn
        .prepare_next("SELECT time_ms FROM _amber_alarms WHERE name = ''", false)
        .unwrap();
    let mut st = st.unwrap();
    let alarm = if st.step().unwrap() {
        Some(st.column_i64(0))
    } else {
        None
    };
    drop(st);
    let (st, _) = conn
        .prepare_next("SELECT seq FROM _amber_meta", false)
        .unwrap();
    let mut st = st.unwrap();
    st.step().unwrap();
    let seq = st.column_i64(0) as u64;
    drop(st);
    let (st, _) = conn.prepare_next("PRAGMA integrity_check", false).unwrap();
    let mut st = st.unwrap();
    st.step().unwrap();
    assert_eq!(st.column_value(0), Value::Text("ok".into()));
    (kv, rows, alarm, seq)
}

#[test]
fn every_commit_is_restorable_from_the_bucket_alone() {
    for (name, _guard, bucket) in backends("every") {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &bucket, None, DurabilityLevel::Remote);
        let mut o = store.open_object("room").unwrap();
        o.exec("CREATE TABLE t (x INTEGER)", &[]).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let mut states = Vec::new();
        let mut kv = BTreeMap::new();
        let mut rows = Vec::new();
        for i in 0..40i64 {
            o.exec("INSERT INTO t VALUES (?1)", &[i.into()]).unwrap();
            rows.push(i);
            let key = format!("k{}", i % 7);
            o.put(&key, &i.to_le_bytes()).unwrap();
            kv.insert(key, i.to_le_bytes().to_vec());
            if i % 5 == 0 {
                o.set_alarm_ms(1000 + i as u64).unwrap();
            }
            if i % 9 == 0 {
                o.delete("k0").unwrap();
                kv.remove("k0");
            }
            let t = o.end_turn().unwrap();
            // Remote durability: the ticket means "in the bucket".
            t.wait().unwrap();
            let alarm = Some(1000 + (i - i % 5));
            states.push((o.current_bookmark(), kv.clone(), rows.clone(), alarm));
        }
        drop(o);
        drop(store);
        drop(data); // the local copy is gone
        let other = tempfile::tempdir().unwrap();
        let store = open_store(other.path(), &bucket, None, DurabilityLevel::Local);
        assert!(store.verify("room").unwrap().is_ok(), "{name}");
        for (bm, kv, rows, alarm) in &states {
            let out = other.path().join(format!("r-{}", bm.seq()));
            let rep = store
                .restore(
                    "room",
                    RestoreTarget::Bookmark(*bm),
                    &out,
                    RestoreOptions::default(),
                )
                .unwrap();
            assert_eq!(rep.bookmark, *bm, "{name}");
            assert!(!rep.partial);
            let (got_kv, got_rows, got_alarm, seq) = read_file(&out);
            assert_eq!(seq, bm.seq(), "{name}: meta seq");
            assert_eq!(&got_kv, kv, "{name} at {bm}");
            assert_eq!(&got_rows, rows, "{name} at {bm}");
            assert_eq!(got_alarm, *alarm, "{name} at {bm}");
        }
    }
}

#[test]
fn bookmark_for_time_finds_the_last_commit_at_or_before() {
    for (name, _guard, bucket) in backends("time") {
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = open_store(
            data.path(),
            &bucket,
            Some(clock.clone()),
            DurabilityLevel::Remote,
        );
        let mut o = store.open_object("doc").unwrap();
        let mut marks = Vec::new();
        for i in 0..10u64 {
            clock.set(2_000_000 + i * 1000);
            o.put("v", &i.to_le_bytes()).unwrap();
            o.end_turn().unwrap().wait().unwrap();
            marks.push((2_000_000 + i * 1000, o.current_bookmark()));
        }
        for (t, bm) in &marks {
            assert_eq!(
                store.bookmark_for_time("doc", *t).unwrap(),
                *bm,
                "{name} at {t}"
            );
            assert_eq!(
                store.bookmark_for_time("doc", *t + 500).unwrap(),
                *bm,
                "{name}"
            );
        }
        assert_eq!(o.bookmark_for_time(2_004_999).unwrap(), marks[4].1);
        // Before the object existed: a clear error.
        let e = store.bookmark_for_time("doc", 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{name}: {e}");
    }
}

#[test]
fn restore_on_next_open_rewinds_starts_a_timeline_and_can_be_undone() {
    for (name, _guard, bucket) in backends("rewind") {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &bucket, None, DurabilityLevel::Remote);
        let mut o = store.open_object("game").unwrap();
        o.exec("CREATE TABLE t (x INTEGER)", &[]).unwrap();
        o.put("score", b"0").unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let early = o.current_bookmark();
        for i in 1..=5i64 {
            o.exec("INSERT INTO t VALUES (?1)", &[i.into()]).unwrap();
            o.put("score", i.to_string().as_bytes()).unwrap();
            o.end_turn().unwrap().wait().unwrap();
        }
        o.set_alarm_ms(77).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let undo = o.restore_on_next_open(early).unwrap();
        assert_eq!(undo, o.current_bookmark());
        drop(o);
        let mut o = store.open_object("game").unwrap();
        assert_eq!(
            o.get("score").unwrap().as_deref(),
            Some(&b"0"[..]),
            "{name}"
        );
        assert_eq!(
            o.get_alarm_ms().unwrap(),
            None,
            "{name}: the alarm rewinds too"
        );
        let n = o
            .exec("SELECT count(*) FROM t", &[])
            .unwrap()
            .one()
            .unwrap();
        assert_eq!(n.get(0), Some(&Value::Integer(0)));
        let b = o.current_bookmark();
        assert!(b.epoch() > early.epoch(), "{name}: a new timeline");
        assert!(
            b.to_string() > undo.to_string(),
            "bookmarks sort in commit order"
        );
        // Write on the new timeline, then undo the restore.
        o.put("score", b"new").unwrap();
        o.end_turn().unwrap().wait().unwrap();
        o.restore_on_next_open(undo).unwrap();
        drop(o);
        let mut o = store.open_object("game").unwrap();
        assert_eq!(
            o.get("score").unwrap().as_deref(),
            Some(&b"5"[..]),
            "{name}"
        );
        assert_eq!(o.get_alarm_ms().unwrap(), Some(77));
        o.integrity_check().unwrap();
        // Garbage bookmarks are typed errors.
        assert_eq!(
            o.restore_on_next_open(Bookmark::new(99, 1))
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert!("zz".parse::<Bookmark>().is_err());
    }
}

#[test]
fn damaged_history_fails_loudly_naming_the_last_consistent_point() {
    // In per-object segment files, and in the shared log's store segments.
    damaged_history(false, "seg");
    damaged_history(true, "sseg");
}

fn damaged_history(shared_log: bool, ext: &str) {
    let bdir = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(&format!("file://{}", bdir.path().display())).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(
        Config::new(data.path())
            .with_bucket(BucketConfig::Bucket(bucket.clone()))
            .with_durability(DurabilityLevel::Remote)
            .with_pitr(amber::PitrConfig::default().with_shared_log(shared_log)),
    )
    .unwrap();
    let mut o = store.open_object("x").unwrap();
    let mut marks = Vec::new();
    for i in 0..12u64 {
        o.put("k", &i.to_le_bytes()).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        marks.push(o.current_bookmark());
    }
    drop(o);
    // Find the segment files, in key order, and damage the middle one.
    let mut segs: Vec<_> = walk(bdir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    segs.sort();
    assert!(
        segs.len() >= 3,
        "one segment per remote-durable commit here"
    );
    let victim = &segs[segs.len() / 2];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let last = *marks.last().unwrap();
    let out = data.path().join("r1");
    let err = store
        .restore(
            "x",
            RestoreTarget::Bookmark(last),
            &out,
            RestoreOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.message().contains("last consistent point"), "{err}");
    assert!(!out.exists(), "a failed restore leaves no file behind");
    assert!(!store.verify("x").unwrap().is_ok());
    let rep = store
        .restore(
            "x",
            RestoreTarget::Bookmark(last),
            &out,
            RestoreOptions {
                allow_partial: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(rep.partial);
    assert!(rep.bookmark.seq() < last.seq());
    let (kv, _, _, seq) = read_file(&out);
    assert_eq!(seq, rep.bookmark.seq());
    assert_eq!(
        kv["k"],
        (seq - 1).to_le_bytes().to_vec(),
        "the state of that exact commit"
    );
    // A missing segment is a gap, reported the same way.
    std::fs::remove_file(victim).unwrap();
    let err = store
        .restore(
            "x",
            RestoreTarget::Latest,
            &data.path().join("r2"),
            RestoreOptions::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corruption, "{err}");
    assert!(err.message().contains("missing"), "{err}");
}

#[test]
fn commits_left_in_the_local_wal_are_shipped_on_reopen() {
    let bdir = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(&format!("file://{}", bdir.path().display())).unwrap();
    let data = tempfile::tempdir().unwrap();
    // Local durability: tickets do not wait for the bucket.
    let store = open_store(data.path(), &bucket, None, DurabilityLevel::Local);
    let mut o = store.open_object("w").unwrap();
    for i in 0..20u64 {
        o.put("k", &i.to_le_bytes()).unwrap();
        o.end_turn().unwrap().wait().unwrap();
    }
    let bm = o.current_bookmark();
    drop(o);
    drop(store); // uploads still running are abandoned
    let store = open_store(data.path(), &bucket, None, DurabilityLevel::Remote);
    let mut o = store.open_object("w").unwrap();
    // Remote level: a sync ticket resolves once everything is shipped.
    o.sync().unwrap().wait().unwrap();
    drop(o);
    let out = data.path().join("r");
    let rep = store
        .restore("w", RestoreTarget::Latest, &out, RestoreOptions::default())
        .unwrap();
    assert_eq!(rep.bookmark, bm);
    assert_eq!(read_file(&out).0["k"], 19u64.to_le_bytes().to_vec());
}

#[test]
fn bad_urls_and_targets_are_typed_errors() {
    for bad in [
        "",
        "ftp://x",
        "s3://",
        "file://relative/path",
        "memory://x?y=1",
        "s3://b/p?nonsense=1",
    ] {
        let e = Bucket::open(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}: {e}");
    }
    let d = tempfile::tempdir().unwrap();
    let e = Store::open(Config::new(d.path()).with_bucket(BucketConfig::Url("nope://".into())))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = Store::open(
        Config::new(d.path())
            .with_bucket(BucketConfig::Disabled)
            .with_durability(DurabilityLevel::Remote),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let s = Store::open(Config::new(d.path())).unwrap();
    let e = s
        .restore(
            "never",
            RestoreTarget::Latest,
            &d.path().join("o"),
            RestoreOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const DAY: u64 = 86_400_000;

/// A store on a local-directory bucket with a two-day retention window,
/// snapshots allowed at any time, and a manual clock at day 100.
fn retention_store() -> (
    tempfile::TempDir,
    tempfile::TempDir,
    Arc<ManualClock>,
    Store,
) {
    let bdir = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(&format!("file://{}", bdir.path().display())).unwrap();
    let data = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(100 * DAY));
    let mut cfg = Config::new(data.path())
        .with_bucket(BucketConfig::Bucket(bucket))
        .with_durability(DurabilityLevel::Remote)
        .with_clock(clock.clone());
    cfg.pitr.snapshot_min_interval = std::time::Duration::ZERO;
    cfg.pitr.retention = std::time::Duration::from_millis(2 * DAY);
    let store = Store::open(cfg).unwrap();
    (bdir, data, clock, store)
}

#[test]
fn retention_deletes_only_what_no_restore_in_the_window_needs() {
    let (_bdir, data, clock, store) = retention_store();
    let day = DAY;
    let mut o = store.open_object("g").unwrap();
    let mut marks = Vec::new();
    // Ten days of writes, each day large enough to trigger a snapshot.
    for d in 0..10u64 {
        clock.set((100 + d) * day);
        for i in 0..4u64 {
            // Incompressible, so the log really outgrows the database.
            let mut x = d * 4 + i + 1;
            let v: Vec<u8> = (0..60_000)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect();
            o.put(&format!("k{i}"), &v).unwrap();
            o.end_turn().unwrap().wait().unwrap();
        }
        marks.push(((100 + d) * day, o.current_bookmark()));
    }
    o.sync().unwrap().wait().unwrap();
    // GC also runs in the background after each snapshot; this call may
    // find nothing left to do.
    store.gc("g").unwrap();
    let h = store.history("g").unwrap();
    let oldest = h.epochs[0].first_seq().unwrap();
    // Inside the window (2 days + 1 hour of grace): still restorable.
    let (t_in, in_window) = marks[marks.len() - 2];
    assert!(t_in + 2 * day >= 109 * day);
    let out = data.path().join("in");
    store
        .restore(
            "g",
            RestoreTarget::Bookmark(in_window),
            &out,
            RestoreOptions::default(),
        )
        .unwrap();
    // Long gone: a clear error, not a wrong state.
    let (_, ancient) = marks[0];
    assert!(ancient.seq() < oldest, "old history was collected");
    let e = store
        .restore(
            "g",
            RestoreTarget::Bookmark(ancient),
            &data.path().join("old"),
            RestoreOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(store.verify("g").unwrap().is_ok());
    // Time-based lookups outside the window are refused up front.
    assert_eq!(
        store.bookmark_for_time("g", 101 * day).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn diagnose_reports_conditional_write_support() {
    for (name, _guard, bucket) in backends("diagnose") {
        let data = tempfile::tempdir().unwrap();
        let store = open_store(data.path(), &bucket, None, DurabilityLevel::Local);
        let d = store.diagnose().unwrap();
        assert!(d.is_sound(), "{name}: {d:?}");
        let get = |n: &str| d.probes.iter().find(|p| p.name == n).unwrap().clone();
        assert!(
            get("create").ok && get("reject-create").ok && get("ranged-read").ok,
            "{name}"
        );
        if name == "file" {
            // LocalFileSystem has no compare-and-swap: reported, not faulty.
            assert!(get("update").unsupported, "{name}");
        } else {
            assert!(d.supports_everything(), "{name}: {d:?}");
        }
    }
}

/// A later epoch that never got its base snapshot (its claimer died first)
/// did not end the one before: that one stays the live timeline, and GC
/// must keep what restores inside the window need from it.
#[test]
fn retention_keeps_an_epoch_that_an_empty_later_epoch_did_not_replace() {
    let (bdir, data, clock, store) = retention_store();
    let day = DAY;
    let mut o = store.open_object("g").unwrap();
    o.put("k", b"day100").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let early = o.current_bookmark();
    let e = early.epoch();
    // An epoch claimed on day 101 whose claimer never shipped anything.
    let id = store.id_from_name("g").unwrap().to_hex();
    let mdir = bdir
        .path()
        .join("objects")
        .join(&id)
        .join(format!("epoch-{:016x}", e + 1));
    std::fs::create_dir_all(&mdir).unwrap();
    std::fs::write(
        mdir.join("manifest"),
        format!(
            "{{\"epoch\":{},\"parent\":null,\"started_ms\":{}}}",
            e + 1,
            101 * day
        ),
    )
    .unwrap();
    // The old epoch stays live and keeps taking writes until day 109.
    clock.set(108 * day + day / 2);
    o.put("k", b"day108").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    clock.set(109 * day);
    o.restore_on_next_open(early).unwrap();
    drop(o);
    let o = store.open_object("g").unwrap();
    assert_eq!(o.current_bookmark().epoch(), e + 2);
    drop(o);
    clock.set(110 * day);
    store.gc("g").unwrap();
    // Day 108.5 is inside the window, on epoch e's timeline.
    let b = store.bookmark_for_time("g", 108 * day + day / 2).unwrap();
    assert_eq!(b.epoch(), e, "{b}");
    let out = data.path().join("restored");
    store
        .restore(
            "g",
            RestoreTarget::Bookmark(b),
            &out,
            RestoreOptions::default(),
        )
        .unwrap();
    let (kv, _, _, _) = read_file(&out);
    assert_eq!(kv.get("k").map(Vec::as_slice), Some(&b"day108"[..]));
}
