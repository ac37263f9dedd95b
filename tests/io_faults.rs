//! I/O faults on an object's files, at every step: the fault-injecting VFS
//! (`amber::testing::FaultVfs`) fails the n-th read, write, sync or
//! truncate of the object's database and WAL, for n = 1, 2, ... until a
//! workload runs past the last such operation. The workload commits turns
//! (a KV write and a SQL row, atomically), with checkpoints every few
//! pages, and reopens the object at its end.
//!
//! After each fault, with the fault cleared:
//! - the call that met it failed with a typed error (`Io`, `StorageFull`
//!   for ENOSPC, or `Broken` from a handle that already broke), and the
//!   object refuses further writes until it is reopened;
//! - a reopen works, and holds every acknowledged turn, each whole, plus
//!   at most the one turn whose call failed (all of it or none of it);
//! - `integrity_check` passes.

use std::collections::BTreeMap;
use std::time::Duration;

use amber::testing::{FaultVfs, IoFault, IoOp};
use amber::{ErrorKind, Object, ReadOptions, Store};

#[path = "support/faults.rs"]
mod faults;

use faults::{create_table, turn, vfs_config as config};

const TURNS: u32 = 12;

fn present(o: &mut Object) -> Vec<u32> {
    faults::present(o, TURNS)
}

/// Runs the workload with the n-th matching operation failing; returns
/// whether the fault fired.
fn run(ops: &[IoOp], fault: IoFault, torn: bool, n: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut o = store.open_object("room").unwrap();
    create_table(&mut o).unwrap();
    let mut acked = BTreeMap::new();
    let mut failed = None;
    FaultVfs::arm(ops, n, fault, torn, "/objects/");
    for i in 0..TURNS {
        match turn(&mut o, i) {
            Ok(()) => {
                acked.insert(i, ());
            }
            Err(e) => {
                let kinds = [ErrorKind::Io, ErrorKind::StorageFull, ErrorKind::Broken];
                assert!(kinds.contains(&e.kind()), "n={n}: untyped failure: {e}");
                if fault == IoFault::Enospc && ops == [IoOp::Write] {
                    assert!(
                        matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::Broken),
                        "n={n}: ENOSPC should say StorageFull: {e}"
                    );
                }
                // The object refuses writes until reopened.
                let again = o.put("after", b"x").and_then(|()| o.end_turn().map(|_| ()));
                assert!(again.is_err(), "n={n}: a broken object took a write");
                failed = Some(i);
                break;
            }
        }
    }
    // Reopen at the end too, so faults in the open path come up.
    if failed.is_none() {
        drop(o);
        match store.open_object("room") {
            Ok(reopened) => o = reopened,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::Io | ErrorKind::StorageFull),
                    "n={n}: untyped failure opening: {e}"
                );
                FaultVfs::disarm();
                o = store.open_object("room").unwrap();
            }
        }
    }
    let fired = FaultVfs::fired() > 0;
    FaultVfs::disarm();
    drop(o);
    let mut o = store
        .open_object("room")
        .unwrap_or_else(|e| panic!("n={n}: reopen after the fault cleared failed: {e}"));
    let have = present(&mut o);
    for i in acked.keys() {
        assert!(
            have.contains(i),
            "n={n}: acknowledged turn {i} lost ({have:?})"
        );
    }
    for i in &have {
        assert!(
            acked.contains_key(i) || Some(*i) == failed,
            "n={n}: turn {i} appeared, but was neither acknowledged nor the failed one"
        );
    }
    o.integrity_check()
        .unwrap_or_else(|e| panic!("n={n}: integrity check: {e}"));
    // And it takes writes again.
    o.put("after", b"ok").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    fired
}

fn every_step(ops: &[IoOp], fault: IoFault, torn: bool) {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let mut n = 1;
    while run(ops, fault, torn, n) {
        n += 1;
        assert!(n < 5000, "the workload never ran out of operations");
    }
    eprintln!(
        "{ops:?} {fault:?} torn={torn}: faults at each of {} steps",
        n - 1
    );
    assert!(
        n > 3,
        "only {} {ops:?} operations: the VFS is not in the path",
        n - 1
    );
}

#[test]
fn eio_on_every_write() {
    every_step(&[IoOp::Write], IoFault::Eio, false);
}

#[test]
fn enospc_on_every_write_torn() {
    every_step(&[IoOp::Write], IoFault::Enospc, true);
}

#[test]
fn eio_on_every_sync_and_truncate() {
    every_step(&[IoOp::Sync, IoOp::Truncate], IoFault::Eio, false);
}

#[test]
fn eio_on_every_read() {
    every_step(&[IoOp::Read], IoFault::Eio, false);
}

/// A read that fails in the middle of a turn, after the turn wrote: SQLite
/// may roll the whole transaction back on such an error. Each turn runs on
/// a cold page cache (the object is reopened first), writes a row, reads a
/// key past the KV cache, then writes its key; the n-th read fails.
/// Whatever n, the turn is kept whole or not at all: before the fix, the
/// key went in on its own in autocommit after SQLite had dropped the row
/// (found by the `io_faults` fuzz target).
#[test]
fn a_read_error_in_the_middle_of_a_turn_never_splits_it() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let mut rolled_back = 0;
    for n in 1..=40u64 {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path())).unwrap();
        let mut o = store.open_object("room").unwrap();
        create_table(&mut o).unwrap();
        turn(&mut o, 0).unwrap();
        let mut acked = vec![0];
        let mut failed = None;
        for i in 1..4u32 {
            FaultVfs::disarm();
            drop(o);
            o = store.open_object("room").unwrap();
            if i == 2 {
                FaultVfs::arm(&[IoOp::Read], n, IoFault::Eio, false, "/objects/");
            }
            let v = faults::value(i);
            let r = o
                .exec(
                    "INSERT INTO t (i, v) VALUES (?, ?)",
                    &[
                        amber::ValueRef::Integer(i64::from(i)),
                        amber::ValueRef::Blob(&v),
                    ],
                )
                .map(|_| ())
                .and_then(|()| {
                    // A read error that leaves the object usable promises
                    // the turn is intact, so a caller may carry on with it.
                    let read = o.get_with(&format!("k{}", i - 1), ReadOptions { no_cache: true });
                    match read {
                        Err(e) if o.is_broken() => Err(e),
                        _ => Ok(()),
                    }
                })
                .and_then(|()| o.put(&format!("k{i}"), &v))
                .and_then(|()| o.end_turn()?.wait());
            match r {
                Ok(_) => acked.push(i),
                Err(e) => {
                    assert!(
                        matches!(e.kind(), ErrorKind::Io | ErrorKind::Broken),
                        "n={n}: {e}"
                    );
                    if o.is_broken() {
                        rolled_back += 1;
                    }
                    failed = Some(i);
                    break;
                }
            }
        }
        FaultVfs::disarm();
        drop(o);
        let mut o = store.open_object("room").unwrap();
        // `present` panics on a turn with only its row or only its key.
        let have = present(&mut o);
        for i in &acked {
            assert!(have.contains(i), "n={n}: acknowledged turn {i} lost");
        }
        for i in &have {
            assert!(
                acked.contains(i) || Some(*i) == failed,
                "n={n}: turn {i} appeared"
            );
        }
        o.integrity_check().unwrap();
        if failed.is_none() {
            // The turn ran past its last read.
            break;
        }
    }
    assert!(rolled_back > 0, "no read fault landed inside a turn");
}

/// The store journal through the same seam (`fsutil::fault_point`): its
/// fdatasync fails. The commit it covered is not acknowledged, and the
/// journal takes no more commits, on any object (after a failed fsync the
/// kernel may have dropped the dirty pages, so nothing written since can
/// be vouched for). A reopened store has every acknowledged commit.
#[test]
fn a_failed_journal_fsync_acknowledges_nothing_more_until_the_store_reopens() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut o = store.open_object("room").unwrap();
    create_table(&mut o).unwrap();
    for i in 0..4 {
        turn(&mut o, i).unwrap();
    }
    FaultVfs::arm(&[IoOp::Sync], 1, IoFault::Eio, false, "/journal/");
    let e = turn(&mut o, 4).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Broken), "{e}");
    assert_eq!(FaultVfs::fired(), 1);
    FaultVfs::disarm();
    // Creating an object is a commit too.
    let e = store
        .open_object("other")
        .and_then(|mut other| {
            other.put("k", b"v")?;
            other.end_turn()?.wait_timeout(Duration::from_secs(10))
        })
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io | ErrorKind::Broken), "{e}");
    drop(o);
    drop(store);
    let store = Store::open(config(dir.path())).unwrap();
    let mut o = store.open_object("room").unwrap();
    let have = present(&mut o);
    assert!(
        have.starts_with(&[0, 1, 2, 3]) && have.len() <= 5,
        "{have:?}"
    );
    o.integrity_check().unwrap();
    turn(&mut o, 5).unwrap();
}

/// A journal append fails (EIO, then ENOSPC): that commit is not
/// acknowledged and its object breaks, but the journal goes on (nothing
/// moved); other objects commit at once, and a reopen of the object holds
/// every acknowledged turn and takes writes again.
#[test]
fn a_failed_journal_append_breaks_only_its_object() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    for fault in [IoFault::Eio, IoFault::Enospc] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path())).unwrap();
        let mut o = store.open_object("room").unwrap();
        create_table(&mut o).unwrap();
        for i in 0..3 {
            turn(&mut o, i).unwrap();
        }
        FaultVfs::arm(&[IoOp::Write], 1, fault, false, "/journal/");
        let e = turn(&mut o, 3).unwrap_err();
        let want = match fault {
            IoFault::Enospc => ErrorKind::StorageFull,
            IoFault::Eio => ErrorKind::Broken,
        };
        assert_eq!(e.kind(), want, "{fault:?}: {e}");
        FaultVfs::disarm();
        let mut other = store.open_object("other").unwrap();
        other.put("k", b"v").unwrap();
        other.end_turn().unwrap().wait().unwrap();
        drop(o);
        let mut o = store.open_object("room").unwrap();
        let have = present(&mut o);
        assert!(have.starts_with(&[0, 1, 2]) && have.len() <= 4, "{have:?}");
        turn(&mut o, 4).unwrap();
        o.integrity_check().unwrap();
    }
}

/// The store catalog under the same faults (it opens through the VFS when
/// `Tuning::sqlite_vfs` is set): the n-th read, write, sync or truncate
/// of `catalog.db` or its WAL fails while six objects are created, each
/// with a turn that also sets an alarm, and one of them is deleted. Every
/// failure is typed; once the fault clears, a fresh `Store` lists every
/// object whose turn was acknowledged, each opens with its value and its
/// alarm, and the delete, if acknowledged, stays done (if it failed, the
/// object is whole or gone).
fn catalog_run(ops: &[IoOp], fault: IoFault, n: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let (mut acked, mut deleted) = (Vec::new(), false);
    let typed = |e: &amber::Error, what: &str| {
        let kinds = [ErrorKind::Io, ErrorKind::StorageFull, ErrorKind::Broken];
        assert!(
            kinds.contains(&e.kind()),
            "n={n}: untyped failure {what}: {e}"
        );
    };
    // The catalog reads its pages at open and keeps them cached: reads
    // fail from the store's open on.
    let reads = ops.contains(&IoOp::Read);
    if reads {
        // A catalog to open.
        drop(Store::open(config(dir.path())).unwrap());
        FaultVfs::arm(ops, n, fault, false, "catalog.db");
    }
    let fired = 'run: {
        let store = match Store::open(config(dir.path())) {
            Ok(s) => s,
            Err(e) => {
                typed(&e, "opening the store");
                let fired = FaultVfs::fired() > 0;
                FaultVfs::disarm();
                break 'run fired;
            }
        };
        if !reads {
            FaultVfs::arm(ops, n, fault, false, "catalog.db");
        }
        for i in 0..6u32 {
            let r = store.open_object(&format!("obj{i}")).and_then(|mut o| {
                o.put("k", &faults::value(i))?;
                o.set_alarm_ms(1_000_000 + u64::from(i))?;
                o.end_turn()?.wait_timeout(Duration::from_secs(30))?;
                Ok(())
            });
            match r {
                Ok(()) => acked.push(i),
                Err(e) => typed(&e, &format!("in obj{i}'s turn")),
            }
        }
        match store.delete_object("obj0", amber::BucketHistory::Keep) {
            Ok(_) => deleted = true,
            Err(e) => typed(&e, "deleting obj0"),
        }
        let fired = FaultVfs::fired() > 0;
        FaultVfs::disarm();
        fired
    };
    let store = Store::open(config(dir.path()))
        .unwrap_or_else(|e| panic!("n={n}: the store did not reopen after the fault: {e}"));
    let listed: Vec<String> = store
        .list_objects()
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    for i in &acked {
        let name = format!("obj{i}");
        if *i == 0 {
            // A delete that failed may still have happened (as a turn whose
            // end failed may have committed): gone or whole, never half,
            // and gone if it was acknowledged.
            let is_listed = listed.contains(&name);
            let mut o = store.open_object(&name).unwrap();
            let value = o.get("k").unwrap();
            assert_eq!(
                is_listed,
                value.is_some(),
                "n={n}: obj0 listed {is_listed}, value {value:?}"
            );
            assert!(!(deleted && is_listed), "n={n}: deleted obj0 came back");
            if let Some(v) = value {
                assert_eq!(v[..], faults::value(0)[..], "n={n}: obj0");
            }
            continue;
        }
        assert!(
            listed.contains(&name),
            "n={n}: {name} is not listed ({listed:?})"
        );
        let mut o = store
            .open_object(&name)
            .unwrap_or_else(|e| panic!("n={n}: {name} did not open: {e}"));
        assert_eq!(
            o.get("k").unwrap().as_deref(),
            Some(&faults::value(*i)[..]),
            "n={n}: {name}"
        );
        assert_eq!(
            o.get_alarm_ms().unwrap(),
            Some(1_000_000 + u64::from(*i)),
            "n={n}: {name}"
        );
    }
    fired
}

/// `min`: the fewest such operations the workload must make.
fn catalog_every_step(ops: &[IoOp], fault: IoFault, min: u64) {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let mut n = 1;
    while catalog_run(ops, fault, n) {
        n += 1;
        assert!(n < 5000, "the workload never ran out of operations");
    }
    eprintln!(
        "catalog {ops:?} {fault:?}: faults at each of {} steps",
        n - 1
    );
    assert!(
        n > min,
        "only {} catalog {ops:?} operations: the VFS is not in the path",
        n - 1
    );
}

#[test]
fn catalog_faults_at_every_step_lose_no_acknowledged_object() {
    catalog_every_step(&[IoOp::Write], IoFault::Eio, 20);
    catalog_every_step(&[IoOp::Write], IoFault::Enospc, 20);
    // The catalog's commits ride on the journal's fsync; its own fsync
    // (amber's, through `fsutil::synced`) comes with the delete.
    catalog_every_step(&[IoOp::Sync, IoOp::Truncate], IoFault::Eio, 1);
    catalog_every_step(&[IoOp::Read], IoFault::Eio, 20);
}
