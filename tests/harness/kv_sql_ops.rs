//! The `kv_sql_ops` target: random KV and SQL operation sequences, with
//! nested transactions that commit or roll back, turn ends, and crash
//! points, against a `BTreeMap` model.
//!
//! - Reads (get, list, SELECT) always see the turn's own writes.
//! - A crash point copies the object's files as they are on disk at that
//!   moment (what a process crash leaves behind) into a new store: it
//!   holds exactly the last committed turn, never part of the open one.
//! - A reopen drops the handle mid-turn: the open turn is gone, every
//!   ended turn is there.

use std::collections::BTreeMap;
use std::path::Path;

use amber::{BucketConfig, Config, Error, ListOptions, Object, Store, Tuning, ValueRef};

use super::{copy_tree, Input};

type Map = BTreeMap<String, Vec<u8>>;

#[derive(Clone, Default, PartialEq, Eq, Debug)]
struct Model {
    kv: Map,
    sql: Map,
}

fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(dir)
        .with_bucket(BucketConfig::Disabled)
        .with_tuning(Tuning {
            // Small, so checkpoints and cache evictions happen.
            checkpoint_pages: 8,
            kv_cache_bytes: 4096,
            ..Tuning::default()
        });
    cfg.sync_threads = 1;
    cfg
}

fn key(inp: &mut Input<'_>) -> String {
    // A tiny alphabet, so keys collide and prefixes overlap.
    let n = inp.u8() % 4;
    (0..n)
        .map(|_| ['a', 'b', 'é', '\0'][inp.u8() as usize % 4])
        .collect()
}

fn value(inp: &mut Input<'_>) -> Vec<u8> {
    let base = inp.bytes(8).to_vec();
    let times = [1usize, 1, 2, 300][inp.u8() as usize % 4];
    base.repeat(times)
}

fn open(store: &Store) -> Object {
    let mut o = store.open_object("m").expect("open");
    o.exec(
        "CREATE TABLE IF NOT EXISTS s (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
        &[],
    )
    .expect("create");
    o.end_turn().expect("turn").wait().expect("durable");
    o
}

fn read_sql(o: &mut Object) -> Map {
    let rows = o
        .exec("SELECT k, v FROM s ORDER BY k", &[])
        .expect("select")
        .to_vec()
        .expect("rows");
    rows.into_iter()
        .map(|r| {
            let k = r.get(0).and_then(|v| v.as_str()).expect("text").to_string();
            let v = r.get(1).and_then(|v| v.as_blob()).expect("blob").to_vec();
            (k, v)
        })
        .collect()
}

fn check_all(o: &mut Object, m: &Model) {
    let all: Map = o
        .list(&ListOptions::default())
        .expect("list")
        .into_iter()
        .collect();
    assert_eq!(all, m.kv, "KV differs from the model");
    assert_eq!(read_sql(o), m.sql, "SQL differs from the model");
}

fn model_list(kv: &Map, o: &ListOptions) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = kv
        .iter()
        .filter(|(k, _)| o.start.as_ref().is_none_or(|s| *k >= s))
        .filter(|(k, _)| o.start_after.as_ref().is_none_or(|s| *k > s))
        .filter(|(k, _)| o.end.as_ref().is_none_or(|e| *k < e))
        .filter(|(k, _)| o.prefix.as_ref().is_none_or(|p| k.starts_with(p.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if o.reverse {
        v.reverse();
    }
    if let Some(l) = o.limit {
        v.truncate(l);
    }
    v
}

/// One operation on the live object and the model of the open turn.
fn step(o: &mut Object, m: &mut Model, inp: &mut Input<'_>, depth: u32) -> Result<(), Error> {
    match inp.u8() % 9 {
        0 | 1 => {
            let (k, v) = (key(inp), value(inp));
            o.put(&k, &v)?;
            m.kv.insert(k, v);
        }
        2 => {
            let k = key(inp);
            let existed = o.delete(&k)?;
            assert_eq!(existed, m.kv.remove(&k).is_some(), "delete({k:?})");
        }
        3 => {
            let k = key(inp);
            assert_eq!(o.get(&k)?, m.kv.get(&k).cloned(), "get({k:?})");
        }
        4 => {
            let f = inp.u8();
            let mut opts = ListOptions::default();
            if f & 1 != 0 {
                opts.start = Some(key(inp));
            }
            if f & 2 != 0 {
                opts.start_after = Some(key(inp));
            }
            if f & 4 != 0 {
                opts.end = Some(key(inp));
            }
            if f & 8 != 0 {
                opts.prefix = Some(key(inp));
            }
            opts.reverse = f & 16 != 0;
            if f & 32 != 0 {
                opts.limit = Some(inp.u8() as usize % 5);
            }
            match o.list(&opts) {
                Ok(got) => assert_eq!(got, model_list(&m.kv, &opts), "list({opts:?})"),
                // Contradictory bounds may be refused; that is a typed error.
                Err(e) => assert_eq!(e.kind(), amber::ErrorKind::InvalidInput, "{e}"),
            }
        }
        5 => {
            let (k, v) = (key(inp), value(inp));
            o.exec(
                "INSERT OR REPLACE INTO s (k, v) VALUES (?1, ?2)",
                &[ValueRef::Text(&k), ValueRef::Blob(&v)],
            )?;
            m.sql.insert(k, v);
        }
        6 => {
            let k = key(inp);
            let c = o.exec("DELETE FROM s WHERE k = ?1", &[ValueRef::Text(&k)])?;
            let written = c.rows_written();
            drop(c);
            assert_eq!(written > 0, m.sql.remove(&k).is_some(), "DELETE {k:?}");
        }
        7 => assert_eq!(read_sql(o), m.sql, "SELECT"),
        _ if depth < 3 => {
            // A nested transaction of a few steps that commits or rolls back.
            let n = 1 + inp.u8() % 3;
            let commit = inp.u8() & 1 == 0;
            let mut inner = m.clone();
            let r: Result<(), Error> = o.transaction(|tx| {
                for _ in 0..n {
                    step(tx, &mut inner, inp, depth + 1)?;
                }
                if commit {
                    Ok(())
                } else {
                    Err(Error::new(amber::ErrorKind::InvalidInput, "roll back"))
                }
            });
            if r.is_ok() {
                *m = inner;
            }
        }
        _ => {}
    }
    Ok(())
}

pub fn run(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let store = Store::open(config(&dir)).expect("store");
    let mut o = open(&store);
    let mut committed = Model::default();
    let mut turn = Model::default();
    let mut inp = Input::new(data);
    let mut crashes = 0;
    for _ in 0..256 {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 12 {
            0 => {
                o.end_turn().expect("end_turn").wait().expect("durable");
                committed = turn.clone();
            }
            1 if crashes < 4 => {
                // A crash point: the files as they are, mid-turn.
                crashes += 1;
                let copy = tmp.path().join(format!("crash{crashes}"));
                copy_tree(&dir, &copy);
                let s2 = Store::open(config(&copy)).expect("store after crash");
                let mut o2 = open(&s2);
                o2.integrity_check().expect("integrity after crash");
                check_all(&mut o2, &committed);
            }
            2 => {
                // Drop the handle mid-turn and reopen: the open turn is gone.
                drop(o);
                o = open(&store);
                turn = committed.clone();
                check_all(&mut o, &committed);
            }
            _ => {
                if let Err(e) = step(&mut o, &mut turn, &mut inp, 0) {
                    panic!("operation failed on valid input: {e}");
                }
            }
        }
    }
    check_all(&mut o, &turn);
    o.end_turn().expect("end_turn").wait().expect("durable");
    drop(o);
    let mut o = open(&store);
    o.integrity_check().expect("integrity");
    check_all(&mut o, &turn);
}
