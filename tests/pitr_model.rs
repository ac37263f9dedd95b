//! PITR against a model: random histories of SQL, KV and alarm turns.
//! Restoring to every commit boundary, and to random times, gives exactly
//! the model's state at that point.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use amber::pitr::{Bucket, RestoreOptions, RestoreTarget};
use amber::sqlite::Connection;
use amber::{BucketConfig, Config, DurabilityLevel, ManualClock, Store, ValueRef};
use proptest::prelude::*;

#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    kv: BTreeMap<String, Vec<u8>>,
    rows: BTreeMap<i64, String>,
    alarm: Option<i64>,
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, Vec<u8>),
    Delete(u8),
    Insert(i64, String),
    Remove(i64),
    Alarm(Option<i64>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..6).prop_map(Op::Delete),
        2 => (0i64..20, "[a-z]{0,12}").prop_map(|(k, v)| Op::Insert(k, v)),
        1 => (0i64..20).prop_map(Op::Remove),
        1 => prop::option::of(0i64..1_000_000).prop_map(Op::Alarm),
    ]
}

fn read(path: &Path) -> State {
    let conn = Connection::open(path, "\u{1}none", Vec::new()).unwrap();
    let mut st = State::default();
    let (q, _) = conn
        .prepare_next("SELECT key, value FROM _amber_kv", false)
        .unwrap();
    let mut q = q.unwrap();
    while q.step().unwrap() {
        st.kv.insert(
            String::from_utf8(q.column_bytes(0)).unwrap(),
            q.column_bytes(1),
        );
    }
    drop(q);
    let (q, _) = conn.prepare_next("SELECT k, v FROM t", false).unwrap();
    let mut q = q.unwrap();
    while q.step().unwrap() {
        st.rows.insert(
            q.column_i64(0),
            String::from_utf8(q.column_bytes(1)).unwrap(),
        );
    }
    drop(q);
    let (q, _) = conn
        .prepare_next("SELECT time_ms FROM _amber_alarms", false)
        .unwrap();
    let mut q = q.unwrap();
    if q.step().unwrap() {
        st.alarm = Some(q.column_i64(0));
    }
    st
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn restore_matches_the_model_at_every_commit(
        turns in prop::collection::vec((prop::collection::vec(op(), 1..5), 1u64..5000), 1..10),
        probes in prop::collection::vec(0u64..60_000, 4),
    ) {
        let bucket = Bucket::open("memory://").unwrap();
        let data = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open(
            Config::new(data.path())
                .with_bucket(BucketConfig::Bucket(bucket.clone()))
                .with_durability(DurabilityLevel::Remote)
                .with_clock(clock.clone()),
        ).unwrap();
        let mut o = store.open_object("m").unwrap();
        o.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)", &[]).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let mut model = State::default();
        let mut history = vec![(clock.now(), o.current_bookmark(), model.clone())];
        for (ops, dt) in &turns {
            clock.advance(*dt);
            for op in ops {
                match op {
                    Op::Put(k, v) => { o.put(&format!("k{k}"), v).unwrap(); model.kv.insert(format!("k{k}"), v.clone()); }
                    Op::Delete(k) => { o.delete(&format!("k{k}")).unwrap(); model.kv.remove(&format!("k{k}")); }
                    Op::Insert(k, v) => {
                        o.exec("INSERT OR REPLACE INTO t VALUES (?1, ?2)", &[ValueRef::Integer(*k), ValueRef::Text(v)]).unwrap();
                        model.rows.insert(*k, v.clone());
                    }
                    Op::Remove(k) => { o.exec("DELETE FROM t WHERE k = ?1", &[ValueRef::Integer(*k)]).unwrap(); model.rows.remove(k); }
                    Op::Alarm(Some(t)) => { o.set_alarm_ms(*t as u64).unwrap(); model.alarm = Some(*t); }
                    Op::Alarm(None) => { o.delete_alarm().unwrap(); model.alarm = None; }
                }
            }
            o.end_turn().unwrap().wait().unwrap();
            history.push((clock.now(), o.current_bookmark(), model.clone()));
        }
        drop(o);
        for (i, (_, bm, want)) in history.iter().enumerate() {
            let out = data.path().join(format!("at-{i}"));
            let rep = store.restore("m", RestoreTarget::Bookmark(*bm), &out, RestoreOptions::default()).unwrap();
            prop_assert_eq!(rep.bookmark, *bm);
            prop_assert_eq!(&read(&out), want, "at {}", bm);
        }
        let start = history[0].0;
        for p in probes {
            let t = start + p;
            // The model's answer: the last commit at or before t.
            let (_, want_bm, want) = history.iter().rev().find(|(ct, _, _)| *ct <= t).unwrap();
            let bm = store.bookmark_for_time("m", t).unwrap();
            prop_assert_eq!(bm, *want_bm, "time {}", t);
            let out = data.path().join(format!("t-{t}"));
            store.restore("m", RestoreTarget::Time(t), &out, RestoreOptions::default()).unwrap();
            prop_assert_eq!(&read(&out), want);
        }
    }
}
