//! The `io_faults` target: random KV and SQL turns on one object whose
//! files go through `amber::testing::FaultVfs`, with fault points (EIO on
//! reads, writes, syncs or truncates, ENOSPC on writes, torn or not, the
//! n-th such operation), the store journal's own faults, reopens and crash
//! copies, against a model.
//!
//! - A call that meets a fault fails with a typed error (`Io`,
//!   `StorageFull` or `Broken`), never a panic; the object then refuses
//!   writes until it is reopened.
//! - Every acknowledged turn survives. A reopen (with the fault cleared)
//!   holds exactly the acknowledged state, or that plus the one turn whose
//!   end failed, whole: never part of a turn, never anything else.
//! - A crash copy (the files as a killed process leaves them) opens to one
//!   of those same two states, and passes `integrity_check`.

use std::collections::BTreeMap;
use std::path::Path;

use amber::testing::{FaultVfs, IoFault, IoOp};
use amber::{BucketConfig, Config, ErrorKind, Object, Store, Tuning, ValueRef};

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
            checkpoint_pages: 8,
            kv_cache_bytes: 4096,
            sqlite_vfs: Some(FaultVfs::NAME.to_string()),
            ..Tuning::default()
        });
    cfg.sync_threads = 1;
    cfg
}

fn key(inp: &mut Input<'_>) -> String {
    let n = 1 + inp.u8() % 3;
    (0..n)
        .map(|_| ['a', 'b', 'c'][inp.u8() as usize % 3])
        .collect()
}

fn value(inp: &mut Input<'_>) -> Vec<u8> {
    let base = inp.bytes(8).to_vec();
    let times = [1usize, 3, 200, 900][inp.u8() as usize % 4];
    base.repeat(times)
}

fn typed(e: &amber::Error) {
    let kinds = [ErrorKind::Io, ErrorKind::StorageFull, ErrorKind::Broken];
    assert!(
        kinds.contains(&e.kind()),
        "untyped failure under an I/O fault: {e}"
    );
}

fn open(store: &Store) -> amber::Result<Object> {
    let mut o = store.open_object("m")?;
    o.exec(
        "CREATE TABLE IF NOT EXISTS s (k TEXT PRIMARY KEY, v BLOB NOT NULL)",
        &[],
    )?;
    o.end_turn()?.wait()?;
    Ok(o)
}

/// Reopens the object with the fault cleared. After a failed journal
/// fsync the store's journal takes no more commits, so only a reopen of
/// the store brings writes back: then that, and it must work.
fn reopen(store: &mut Store, dir: &Path) -> Object {
    FaultVfs::disarm();
    match open(store) {
        Ok(o) => o,
        Err(e) => {
            typed(&e);
            *store = Store::open(config(dir)).expect("store reopen");
            open(store).unwrap_or_else(|e| panic!("reopen after the fault cleared: {e}"))
        }
    }
}

fn read(o: &mut Object) -> Model {
    let kv = o
        .list(&amber::ListOptions::default())
        .expect("list")
        .into_iter()
        .collect();
    let rows = o
        .exec("SELECT k, v FROM s ORDER BY k", &[])
        .expect("select")
        .to_vec()
        .expect("rows");
    let sql = rows
        .into_iter()
        .map(|r| {
            let k = r.get(0).and_then(|v| v.as_str()).expect("text").to_string();
            let v = r.get(1).and_then(|v| v.as_blob()).expect("blob").to_vec();
            (k, v)
        })
        .collect();
    Model { kv, sql }
}

/// The object holds `acked`, or `maybe` (a turn whose end failed) whole;
/// returns which, as the new acknowledged state.
fn settle(o: &mut Object, acked: &Model, maybe: Option<&Model>, what: &str) -> Model {
    let got = read(o);
    if got == *acked {
        return got;
    }
    if maybe == Some(&got) {
        return got;
    }
    panic!("{what}: the object holds neither the acknowledged state nor the failed turn whole");
}

fn arm(inp: &mut Input<'_>) {
    let mask = inp.u8();
    let mut ops = Vec::new();
    for (bit, op) in [IoOp::Read, IoOp::Write, IoOp::Sync, IoOp::Truncate]
        .into_iter()
        .enumerate()
    {
        if mask & (1 << bit) != 0 {
            ops.push(op);
        }
    }
    if ops.is_empty() {
        ops.push(IoOp::Write);
    }
    let nth = 1 + u64::from(inp.u8() % 48);
    let fault = if mask & 16 != 0 {
        IoFault::Enospc
    } else {
        IoFault::Eio
    };
    let torn = mask & 32 != 0;
    // Object files, or the store journal (its appends and fsyncs).
    let filter = if mask & 64 != 0 {
        "/journal/"
    } else {
        "/objects/"
    };
    FaultVfs::arm(&ops, nth, fault, torn, filter);
}

pub fn run(data: &[u8]) {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    FaultVfs::disarm();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut store = Store::open(config(&dir)).expect("store");
    let mut o = open(&store).expect("open");
    let mut acked = Model::default();
    let mut turn = Model::default();
    // A turn whose end failed: it may or may not have landed.
    let mut maybe: Option<Model> = None;
    let mut broken = false;
    let mut inp = Input::new(data);
    let mut crashes = 0;
    for _ in 0..200 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8() % 12;
        if broken && op != 6 && op != 8 {
            // A broken object refuses writes; reads may still work.
            let e = o.put("x", b"y").and_then(|()| o.end_turn().map(|_| ()));
            assert!(e.is_err(), "a broken object took a write");
            continue;
        }
        let r: amber::Result<()> = match op {
            0..=2 => {
                let (k, v) = (key(&mut inp), value(&mut inp));
                o.put(&k, &v).map(|()| {
                    turn.kv.insert(k, v);
                })
            }
            3 => {
                let k = key(&mut inp);
                o.delete(&k).map(|_| {
                    turn.kv.remove(&k);
                })
            }
            4 => {
                let (k, v) = (key(&mut inp), value(&mut inp));
                o.exec(
                    "INSERT OR REPLACE INTO s (k, v) VALUES (?1, ?2)",
                    &[ValueRef::Text(&k), ValueRef::Blob(&v)],
                )
                .map(|_| {
                    turn.sql.insert(k, v);
                })
            }
            5 => match o.end_turn().and_then(|t| t.wait()) {
                Ok(_) => {
                    acked = turn.clone();
                    maybe = None;
                    Ok(())
                }
                Err(e) => {
                    maybe = Some(turn.clone());
                    Err(e)
                }
            },
            6 => {
                // Reopen with the fault cleared.
                drop(o);
                o = reopen(&mut store, &dir);
                acked = settle(&mut o, &acked, maybe.as_ref(), "reopen");
                turn = acked.clone();
                maybe = None;
                broken = false;
                Ok(())
            }
            7 => {
                arm(&mut inp);
                Ok(())
            }
            8 if crashes < 3 => {
                // The files as a killed process leaves them.
                crashes += 1;
                FaultVfs::disarm();
                let copy = tmp.path().join(format!("crash{crashes}"));
                copy_tree(&dir, &copy);
                let s2 = Store::open(config(&copy)).expect("store after crash");
                let mut o2 = open(&s2).expect("open after crash");
                o2.integrity_check().expect("integrity after crash");
                let pending = if broken { maybe.as_ref() } else { None };
                settle(&mut o2, &acked, pending, "crash copy");
                Ok(())
            }
            9 => {
                // Reopen the whole store (the journal starts a new file).
                drop(o);
                drop(store);
                FaultVfs::disarm();
                store = Store::open(config(&dir)).expect("store reopen");
                o = reopen(&mut store, &dir);
                acked = settle(&mut o, &acked, maybe.as_ref(), "store reopen");
                turn = acked.clone();
                maybe = None;
                broken = false;
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            typed(&e);
            // A failed statement inside a turn may leave the object usable
            // (SQLite rolled back just the statement); a failed end, or a
            // break, does not.
            broken = o.is_broken();
            if !broken && op == 5 {
                panic!("a failed end_turn left the object usable: {e}");
            }
        }
    }
    FaultVfs::disarm();
    drop(o);
    let mut o = reopen(&mut store, &dir);
    o.integrity_check().expect("integrity");
    settle(&mut o, &acked, maybe.as_ref(), "final reopen");
}
