//! Model test: random KV, SQL and alarm operations in random turns,
//! transactions and reopenings, checked against an in-memory model.

mod common;

use std::collections::BTreeMap;

use amber::{Error, ErrorKind, ListOptions, Object, Store, Value, ValueRef};
use proptest::prelude::*;

#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    kv: BTreeMap<String, Vec<u8>>,
    sql: BTreeMap<String, i64>,
    alarm: Option<u64>,
}

#[derive(Clone, Debug)]
enum Op {
    Put(String, Vec<u8>),
    PutMany(Vec<(String, Vec<u8>)>),
    Delete(String),
    Get(String),
    List {
        prefix: Option<String>,
        start: Option<String>,
        reverse: bool,
        limit: Option<usize>,
    },
    SqlUpsert(String, i64),
    SqlDelete(String),
    SqlCheck,
    SetAlarm(u64),
    DeleteAlarm,
    EndTurn,
    /// Drop the handle without ending the turn, then reopen.
    Reopen,
    DeleteAll,
    Txn(Vec<Op>, bool),
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "a",
        "ab",
        "b",
        "ba",
        "bb",
        "c",
        "\u{e9}",
        "\u{1F600}",
        "a\u{0}",
    ])
    .prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(k, v)| Op::Put(k, v)),
        1 => prop::collection::vec((key(), prop::collection::vec(any::<u8>(), 0..4)), 0..4).prop_map(Op::PutMany),
        2 => key().prop_map(Op::Delete),
        2 => key().prop_map(Op::Get),
        1 => (prop::option::of(key()), prop::option::of(key()), any::<bool>(), prop::option::of(0usize..4))
            .prop_map(|(prefix, start, reverse, limit)| Op::List { prefix, start, reverse, limit }),
        3 => (key(), any::<i64>()).prop_map(|(k, v)| Op::SqlUpsert(k, v)),
        1 => key().prop_map(Op::SqlDelete),
        1 => Just(Op::SqlCheck),
        1 => (0u64..1_000_000).prop_map(Op::SetAlarm),
        1 => Just(Op::DeleteAlarm),
        3 => Just(Op::EndTurn),
        1 => Just(Op::Reopen),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    leaf().prop_recursive(2, 24, 6, |inner| {
        prop_oneof![
            6 => inner.clone(),
            1 => Just(Op::DeleteAll),
            2 => (prop::collection::vec(inner, 0..6), any::<bool>()).prop_map(|(ops, ok)| Op::Txn(ops, ok)),
        ]
    })
}

const TABLE: &str = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)";

fn apply_model(st: &mut State, op: &Op) {
    match op {
        Op::Put(k, v) => {
            st.kv.insert(k.clone(), v.clone());
        }
        Op::PutMany(es) => {
            for (k, v) in es {
                st.kv.insert(k.clone(), v.clone());
            }
        }
        Op::Delete(k) => {
            st.kv.remove(k);
        }
        Op::SqlUpsert(k, v) => {
            st.sql.insert(k.clone(), *v);
        }
        Op::SqlDelete(k) => {
            st.sql.remove(k);
        }
        Op::SetAlarm(ms) => st.alarm = Some(*ms),
        Op::DeleteAlarm => st.alarm = None,
        Op::DeleteAll => *st = State::default(),
        Op::Txn(ops, ok) => {
            let before = st.clone();
            for o in ops {
                apply_model(st, o);
            }
            if !ok {
                *st = before;
            }
        }
        Op::Get(_) | Op::List { .. } | Op::SqlCheck | Op::EndTurn | Op::Reopen => {}
    }
}

fn list_model(
    st: &State,
    prefix: &Option<String>,
    start: &Option<String>,
    reverse: bool,
    limit: Option<usize>,
) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = st
        .kv
        .iter()
        .filter(|(k, _)| prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .filter(|(k, _)| start.as_ref().is_none_or(|s| k.as_bytes() >= s.as_bytes()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    if reverse {
        v.reverse();
    }
    if let Some(l) = limit {
        v.truncate(l);
    }
    v
}

fn sql_rows(o: &mut Object) -> BTreeMap<String, i64> {
    o.exec("SELECT k, v FROM t", &[])
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            match r.values() {
                [Value::Text(k), Value::Integer(v)] => (k.clone(), *v),
                other => panic!("unexpected row {other:?}"),
            }
        })
        .collect()
}

/// Runs `op` on the object, checking reads against `st` (the model state
/// the object should currently show).
fn run(o: &mut Object, st: &State, op: &Op) -> Result<(), Error> {
    match op {
        Op::Put(k, v) => o.put(k, v)?,
        Op::PutMany(es) => {
            let refs: Vec<(&str, &[u8])> =
                es.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            o.put_many(&refs)?;
        }
        Op::Delete(k) => {
            let existed = o.delete(k)?;
            assert_eq!(existed, st.kv.contains_key(k), "delete({k:?}) existence");
        }
        Op::Get(k) => assert_eq!(o.get(k)?, st.kv.get(k).cloned(), "get({k:?})"),
        Op::List {
            prefix,
            start,
            reverse,
            limit,
        } => {
            let got = o.list(&ListOptions {
                prefix: prefix.clone(),
                start: start.clone(),
                reverse: *reverse,
                limit: *limit,
                ..Default::default()
            })?;
            assert_eq!(
                got,
                list_model(st, prefix, start, *reverse, *limit),
                "{op:?}"
            );
        }
        Op::SqlUpsert(k, v) => {
            o.exec(
                "INSERT OR REPLACE INTO t (k, v) VALUES (?1, ?2)",
                &[ValueRef::Text(k), ValueRef::Integer(*v)],
            )?;
        }
        Op::SqlDelete(k) => {
            o.exec("DELETE FROM t WHERE k = ?1", &[ValueRef::Text(k)])?;
        }
        Op::SqlCheck => assert_eq!(sql_rows(o), st.sql),
        Op::SetAlarm(ms) => o.set_alarm_ms(*ms)?,
        Op::DeleteAlarm => o.delete_alarm()?,
        Op::DeleteAll => {
            o.delete_all()?;
            o.exec(TABLE, &[])?;
        }
        Op::EndTurn | Op::Reopen | Op::Txn(..) => unreachable!("handled by the driver"),
    }
    Ok(())
}

fn check_all(o: &mut Object, st: &State) {
    let all = o.list(&ListOptions::default()).unwrap();
    let want: Vec<(String, Vec<u8>)> = list_model(st, &None, &None, false, None);
    assert_eq!(all, want, "kv contents");
    assert_eq!(sql_rows(o), st.sql, "sql contents");
    assert_eq!(o.get_alarm_ms().unwrap(), st.alarm, "alarm");
}

fn drive(
    store: &Store,
    o: &mut Option<Object>,
    cur: &mut State,
    committed: &mut State,
    ops: &[Op],
) {
    for op in ops {
        match op {
            Op::EndTurn => {
                o.as_mut().unwrap().end_turn().unwrap().wait().unwrap();
                *committed = cur.clone();
            }
            Op::Reopen => {
                drop(o.take());
                let mut n = store.open_object("m").unwrap();
                *cur = committed.clone();
                check_all(&mut n, cur);
                *o = Some(n);
            }
            Op::Txn(inner, ok) => {
                let before = cur.clone();
                let obj = o.as_mut().unwrap();
                let r: Result<(), Error> = obj.transaction(|tx| {
                    for i in inner {
                        match i {
                            Op::EndTurn | Op::Reopen | Op::Txn(..) => {}
                            _ => {
                                run(tx, cur, i)?;
                                apply_model(cur, i);
                            }
                        }
                    }
                    if *ok {
                        Ok(())
                    } else {
                        Err(Error::new(ErrorKind::InvalidInput, "rollback"))
                    }
                });
                assert_eq!(r.is_ok(), *ok);
                if !ok {
                    *cur = before;
                }
                check_all(o.as_mut().unwrap(), cur);
            }
            other => {
                run(o.as_mut().unwrap(), cur, other).unwrap();
                apply_model(cur, other);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn object_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let (_d, store) = common::store();
        let mut o = store.open_object("m").unwrap();
        o.exec(TABLE, &[]).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let mut obj = Some(o);
        let mut cur = State::default();
        let mut committed = State::default();
        drive(&store, &mut obj, &mut cur, &mut committed, &ops);
        let mut o = obj.take().unwrap();
        check_all(&mut o, &cur);
        o.end_turn().unwrap().wait().unwrap();
        drop(o);
        let mut o = store.open_object("m").unwrap();
        check_all(&mut o, &cur);
        o.integrity_check().unwrap();
    }
}
