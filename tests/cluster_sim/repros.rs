//! Deterministic repros of findings of the simulation, fixed since.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, KeyLayout};
use amber::testing::Op;
use object_store::memory::InMemory;
use object_store::ObjectStore;

use crate::host::{open_host, open_host_with, wait_lease};
use crate::links::Link;
use crate::model::{count_panics, OBJ, PANICS, TTL_MS, WAIT};

/// Retention against takeovers. A claim whose base snapshot never lands
/// leaves an epoch with a manifest and nothing else; the next claim then
/// rebuilds from the epoch before it (`History::latest` skips empty ones).
/// Retention must keep that epoch. On `scale` at 7f8a74a it did not:
/// `gc` counts the earlier epoch as ended when the empty one's manifest was
/// written and deletes it once that is past the window, and the next
/// takeover finds nothing to rebuild from and starts the object empty, so
/// an acknowledged write is lost. (The simulation's clocks never cross a
/// retention window, so this is a separate, deterministic scenario.)
#[test]
fn gc_keeps_what_the_next_takeover_rebuilds_from() {
    count_panics();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = KeyLayout::new("sim").unwrap();
    let links = [Link::new(&inner, 1), Link::new(&inner, 2)];
    let retention = Duration::from_secs(1);
    let bucket = |i: usize| {
        let link = links[i].store();
        Bucket::from_store(link, layout.clone())
    };
    let a = open_host_with("a", &bucket(0), retention);
    let b = open_host_with("b", &bucket(1), retention);

    // a owns the object and acknowledges a write (epoch 1).
    let mut oa = a.store().open_object(OBJ).unwrap();
    oa.put("k", b"acked").unwrap();
    oa.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    let e1 = oa.epoch();
    drop(oa);

    // b's clock says a's lease lapsed: b takes the object (epoch 2), but
    // its base snapshot cannot be uploaded, and b drops the handle.
    b.clock.advance(TTL_MS + 1);
    wait_lease(&b);
    links[1].gate.refuse(Op::Put, "/snapshots/");
    let ob = b.store().open_object(OBJ).unwrap();
    let e2 = ob.epoch();
    assert!(e2 > e1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ob.is_broken() {
        assert!(
            Instant::now() < deadline,
            "b's snapshot upload never gave up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = ob.current_bookmark();
    drop(ob);
    links[1].gate.release();
    let h = b.store().history(OBJ).unwrap();
    let ep2 = h.epoch(e2).expect("epoch 2 has a manifest");
    assert!(
        ep2.snapshots.is_empty(),
        "epoch 2 got no base snapshot: {t:?}"
    );

    // The object sits idle past the retention window (plus GC's grace);
    // both hosts rejoin; an operator runs retention.
    let idle = (retention + amber::pitr::gc::GC_GRACE).as_millis() as u64 + 1000;
    for h in [&a, &b] {
        h.clock.advance(idle);
    }
    b.clock.set(a.clock.now());
    wait_lease(&a);
    wait_lease(&b);
    let rep = a.store().gc(OBJ).unwrap();
    println!("gc: {rep:?}");
    for ep in &a.store().history(OBJ).unwrap().epochs {
        println!("after gc: {ep:?}");
    }

    // The next owner must still have the acknowledged write.
    let mut o = match a.store().open_object(OBJ) {
        Ok(o) => o,
        Err(e) => {
            println!("a: {e}");
            b.store().open_object(OBJ).unwrap()
        }
    };
    println!("reopened in epoch {}, seq {}", o.epoch(), o.seq());
    assert_eq!(
        o.get("k").unwrap().as_deref(),
        Some(&b"acked"[..]),
        "an acknowledged write is gone after gc + takeover (gc deleted {rep:?})"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

/// A point-in-time restore scheduled on one host (`restore_on_next_open`)
/// is a marker in that host's data directory. If the object changes hands
/// before that host reopens it, the other host's acknowledged writes come
/// after the bookmark; the marker must not roll them back when the first
/// host later takes the object again.
#[test]
fn a_stale_restore_marker_does_not_undo_another_hosts_writes() {
    count_panics();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = KeyLayout::new("sim").unwrap();
    let links = [Link::new(&inner, 1), Link::new(&inner, 2)];
    let bucket = |i: usize| {
        let link = links[i].store();
        Bucket::from_store(link, layout.clone())
    };
    let a = open_host("a", &bucket(0));
    let b = open_host("b", &bucket(1));

    // a writes, schedules a restore to where it is now, and closes.
    let mut oa = a.store().open_object(OBJ).unwrap();
    oa.put("k1", b"one").unwrap();
    oa.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    let mark = oa.current_bookmark();
    oa.restore_on_next_open(mark).unwrap();
    drop(oa);

    // b's clock says a's lease lapsed: b takes the object and a write of
    // b's is acknowledged.
    b.clock.advance(TTL_MS + 1);
    wait_lease(&b);
    let mut ob = b.store().open_object(OBJ).unwrap();
    assert_eq!(ob.get("k1").unwrap().as_deref(), Some(&b"one"[..]));
    ob.put("k2", b"two").unwrap();
    ob.end_turn().unwrap().wait_timeout(WAIT).unwrap();
    drop(ob);

    // Later a's clock says b's lease lapsed, and a takes the object back.
    a.clock.set(b.clock.now() + TTL_MS + 1);
    wait_lease(&a);
    let mut o = a.store().open_object(OBJ).unwrap();
    println!(
        "a reopened in epoch {}, seq {} (restore target was {mark:?})",
        o.epoch(),
        o.seq()
    );
    assert_eq!(
        o.get("k2").unwrap().as_deref(),
        Some(&b"two"[..]),
        "b's acknowledged write was rolled back by a's stale restore marker"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}
