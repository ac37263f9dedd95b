//! The shared log: many objects' commits go to the bucket in one store
//! segment per PUT, and each object is still restorable, alone, at every
//! one of its acknowledged commits: through its indexes after a clean
//! close, and by scanning the store segments' tables of contents when the
//! indexes and span ends never landed (a crash, or a bucket outage at
//! close).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use amber::pitr::{Bookmark, Bucket, KeyKind, KeyLayout, RestoreOptions, RestoreTarget};
use amber::testing::FaultyStore;
use amber::{BucketConfig, Config, DurabilityLevel, PitrConfig, Store};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const OBJECTS: usize = 24;
const ROUNDS: usize = 12;

type Model = BTreeMap<String, Vec<u8>>;

fn store(dir: &std::path::Path, bucket: &Bucket, pitr: PitrConfig) -> Store {
    Store::open(
        Config::new(dir)
            .with_bucket(BucketConfig::Bucket(bucket.clone()))
            .with_durability(DurabilityLevel::Remote)
            .with_pitr(pitr),
    )
    .unwrap()
}

/// Keys in the bucket, by kind.
fn census(bucket: &Bucket) -> BTreeMap<&'static str, usize> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let keys: Vec<_> = rt.block_on(async {
        use futures_util::TryStreamExt;
        bucket
            .store()
            .list(None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
    });
    let mut out = BTreeMap::new();
    for m in keys {
        let kind = if bucket.layout().parse_store_segment(&m.location).is_some() {
            "store segment"
        } else {
            match bucket.layout().parse(&m.location).map(|p| p.kind) {
                Ok(KeyKind::Segment { .. }) => "segment",
                Ok(KeyKind::Snapshot { .. }) => "snapshot",
                Ok(KeyKind::Index { .. }) => "index",
                Ok(KeyKind::Span { open: true, .. }) => "open",
                Ok(KeyKind::Span { open: false, .. }) => "end",
                _ => "other",
            }
        };
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// Writes ROUNDS rounds over OBJECTS objects: each round, one turn per
/// object, then waits for every ticket (Remote). Returns each object's
/// (bookmark, model) after each of its commits, and the PUTs it took.
/// With `outage_at_close`, the bucket refuses everything once the writes
/// are acknowledged, so no index or span end written at close lands.
fn write_rounds(
    data: &std::path::Path,
    bucket: &Bucket,
    faulty: &FaultyStore,
    pitr: PitrConfig,
    outage_at_close: bool,
) -> (Vec<Vec<(Bookmark, Model)>>, u64) {
    let st = store(data, bucket, pitr.with_retries(2, Duration::from_millis(1)));
    let mut objs: Vec<_> = (0..OBJECTS)
        .map(|i| st.open_object(&format!("room-{i}")).unwrap())
        .collect();
    let mut models = vec![Model::new(); OBJECTS];
    let mut states = vec![Vec::new(); OBJECTS];
    let puts_before = faulty.counts().put;
    for r in 0..ROUNDS {
        let mut tickets = Vec::new();
        for (i, o) in objs.iter_mut().enumerate() {
            let key = format!("k{}", (r + i) % 5);
            let value = format!("{i}:{r}").into_bytes();
            o.put(&key, &value).unwrap();
            models[i].insert(key, value);
            if r % 4 == 3 {
                o.delete(&format!("k{}", r % 5)).unwrap();
                models[i].remove(&format!("k{}", r % 5));
            }
            tickets.push(o.end_turn().unwrap());
        }
        for (i, t) in tickets.into_iter().enumerate() {
            t.wait().unwrap();
            states[i].push((objs[i].current_bookmark(), models[i].clone()));
        }
    }
    let puts = faulty.counts().put - puts_before;
    if outage_at_close {
        faulty.set_outage(true);
    }
    objs.clear();
    drop(st);
    faulty.set_outage(false);
    (states, puts)
}

/// Restores every object at every recorded commit from the bucket alone,
/// on a fresh data directory, and compares with the model.
fn check_every_commit(bucket: &Bucket, states: &[Vec<(Bookmark, Model)>]) {
    let other = tempfile::tempdir().unwrap();
    let st =
        Store::open(Config::new(other.path()).with_bucket(BucketConfig::Bucket(bucket.clone())))
            .unwrap();
    for (i, commits) in states.iter().enumerate() {
        let name = format!("room-{i}");
        let v = st.verify(&name).unwrap();
        assert!(v.is_ok(), "{name}: {v:?}");
        for (bm, model) in commits {
            let out = other.path().join(format!("r-{i}-{}", bm.seq()));
            let rep = st
                .restore(
                    &name,
                    RestoreTarget::Bookmark(*bm),
                    &out,
                    RestoreOptions::default(),
                )
                .unwrap();
            assert_eq!(rep.bookmark, *bm, "{name}");
            assert!(!rep.partial, "{name} at {bm}");
            let got = read_kv(&out);
            assert_eq!(&got, model, "{name} at {bm}");
        }
        // The newest commit is also what the object reopens to after the
        // local copy is gone: restore to the latest.
        let out = other.path().join(format!("latest-{i}"));
        let rep = st
            .restore(
                &name,
                RestoreTarget::Latest,
                &out,
                RestoreOptions::default(),
            )
            .unwrap();
        assert_eq!(rep.bookmark, commits.last().unwrap().0, "{name}");
    }
}

fn read_kv(path: &std::path::Path) -> Model {
    let conn =
        amber::sqlite::Connection::open(path, "\u{1}none", vec!["integrity_check".into()]).unwrap();
    let (st, _) = conn
        .prepare_next("SELECT key, value FROM _amber_kv", false)
        .unwrap();
    let mut st = st.unwrap();
    let mut out = Model::new();
    while st.step().unwrap() {
        out.insert(
            String::from_utf8(st.column_bytes(0)).unwrap(),
            st.column_bytes(1),
        );
    }
    out
}

fn bucket() -> (Bucket, Arc<FaultyStore>) {
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultyStore::counting(mem));
    (
        Bucket::from_store(faulty.clone(), KeyLayout::new("").unwrap()),
        faulty,
    )
}

#[test]
fn objects_share_store_segments_and_restore_through_their_indexes() {
    let (bucket, faulty) = bucket();
    // A flush window, so that a round's commits meet in one batch even on
    // an in-memory bucket whose PUTs take no time.
    let pitr = PitrConfig::default()
        .with_index_interval(Duration::ZERO)
        .with_flush_interval(Duration::from_millis(200));
    let data = tempfile::tempdir().unwrap();
    let (states, puts) = write_rounds(data.path(), &bucket, &faulty, pitr, false);
    let keys = census(&bucket);
    eprintln!("{keys:?}; {puts} PUTs for {} commits", OBJECTS * ROUNDS);
    // No per-object segment files: every commit went into a store segment,
    // and far fewer store segments than commits.
    assert_eq!(keys.get("segment"), None, "{keys:?}");
    let segs = keys["store segment"];
    assert!(
        segs <= ROUNDS * 3,
        "{segs} store segments for {ROUNDS} rounds"
    );
    // One span per object, closed cleanly.
    assert_eq!(keys["open"], OBJECTS, "{keys:?}");
    assert_eq!(keys["end"], OBJECTS, "{keys:?}");
    assert!(keys["index"] >= OBJECTS, "{keys:?}");
    check_every_commit(&bucket, &states);
}

#[test]
fn without_indexes_or_span_ends_restore_scans_the_tables_of_contents() {
    let (bucket, faulty) = bucket();
    // The default interval: nothing is indexed before close, and the
    // outage at close loses the indexes and the span ends, as a crash
    // would. Only the store segments and `.open` markers are there.
    let data = tempfile::tempdir().unwrap();
    let pitr = PitrConfig::default().with_flush_interval(Duration::from_millis(200));
    let (states, puts) = write_rounds(data.path(), &bucket, &faulty, pitr, true);
    let keys = census(&bucket);
    assert_eq!(keys.get("index"), None, "{keys:?}");
    assert_eq!(keys.get("end"), None, "{keys:?}");
    assert_eq!(keys["open"], OBJECTS, "{keys:?}");
    // The PUTs: a store segment per batch; per object, one `.open` and
    // its creation (a base snapshot and a manifest); nothing per commit.
    let segs = keys["store segment"];
    assert!(
        segs <= ROUNDS * 3,
        "{segs} store segments for {ROUNDS} rounds"
    );
    assert!(
        puts as usize <= segs + 3 * OBJECTS,
        "{puts} PUTs for {} commits: {keys:?}",
        OBJECTS * ROUNDS
    );
    check_every_commit(&bucket, &states);
}

#[test]
fn a_reopened_store_continues_in_a_new_stream() {
    let (bucket, faulty) = bucket();
    let pitr = PitrConfig::default().with_index_interval(Duration::ZERO);
    let data = tempfile::tempdir().unwrap();
    // The first process's close is lost (as in a crash)...
    let (mut states, _) = write_rounds(data.path(), &bucket, &faulty, pitr.clone(), true);
    // ...and the next one, on the same data directory, writes on into a
    // stream of its own.
    {
        let st = store(data.path(), &bucket, pitr);
        for (i, commits) in states.iter_mut().enumerate() {
            let name = format!("room-{i}");
            let mut o = st.open_object(&name).unwrap();
            let mut model = commits.last().unwrap().1.clone();
            for (k, v) in &model {
                assert_eq!(o.get(k).unwrap().as_deref(), Some(&v[..]), "{name}");
            }
            o.put("after", b"reopen").unwrap();
            model.insert("after".into(), b"reopen".to_vec());
            o.end_turn().unwrap().wait().unwrap();
            commits.push((o.current_bookmark(), model));
        }
    }
    let keys = census(&bucket);
    assert_eq!(keys["open"], 2 * OBJECTS, "two spans each: {keys:?}");
    assert_eq!(keys["end"], OBJECTS, "only the second closed: {keys:?}");
    check_every_commit(&bucket, &states);
}

/// A handle dropped while its last commit is still in flight, and the
/// object opened again at once in the same store: the new handle must not
/// ship that commit a second time into the same span (the index would hold
/// overlapping runs, which readers refuse). Found by `tests/cluster_sim.rs`
/// (seed 18: a stampede reopened the object mid-upload).
#[test]
fn a_reopen_while_the_last_commit_is_in_flight_keeps_the_index_in_order() {
    let (bucket, faulty) = bucket();
    let dir = tempfile::tempdir().unwrap();
    // Every span's runs are indexed when the span ends (at close).
    let pitr = PitrConfig {
        index_interval: Duration::ZERO,
        ..PitrConfig::default()
    };
    let s = store(dir.path(), &bucket, pitr);
    faulty.set_faults(amber::testing::Faults {
        delay: 1000,
        max_delay: Duration::from_millis(40),
        ..amber::testing::Faults::none()
    });
    for round in 0..5u32 {
        let mut o = s.open_object("room").unwrap();
        o.put("k", &round.to_le_bytes()).unwrap();
        let _in_flight = o.end_turn().unwrap();
        drop(o);
    }
    let mut o = s.open_object("room").unwrap();
    o.put("k", b"last").unwrap();
    o.end_turn()
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .unwrap();
    drop(o);
    faulty.set_faults(amber::testing::Faults::none());
    drop(s);
    let s = store(
        tempfile::tempdir().unwrap().path(),
        &bucket,
        PitrConfig::default(),
    );
    let report = s.verify("room").unwrap();
    assert!(report.is_ok(), "{report:?}");
}
