//! `verify` walks the log the way restore does: a gap that a later
//! snapshot bridges is reported as bridged, not as missing commits, and
//! every commit from the snapshot on stays restorable; a gap that nothing
//! bridges is still a problem (issue #13, a round-1 finding).

use std::time::Duration;

use amber::testing::SplitMix;
use amber::{Config, DurabilityLevel, PitrConfig, Store, Tuning};

fn store(dir: &std::path::Path) -> Store {
    Store::open(
        Config::new(dir)
            .with_durability(DurabilityLevel::Remote)
            // Per-object segment files, which the tests delete one by one
            // (in the shared log an index is only a shortcut: deleting one
            // loses nothing; tests/pitr.rs damages store segments).
            .with_pitr(
                PitrConfig::default()
                    .with_snapshot_min_interval(Duration::ZERO)
                    .with_shared_log(false),
            )
            .with_tuning(Tuning {
                checkpoint_pages: 8,
                ..Tuning::default()
            }),
    )
    .unwrap()
}

/// Commits until the epoch has a snapshot past the base with a segment
/// between them; returns the store.
fn history_with_two_snapshots(dir: &std::path::Path) -> Store {
    let s = store(dir);
    let mut o = s.open_object("o").unwrap();
    let mut rng = SplitMix::new(3);
    for i in 0..200 {
        // Incompressible, and always the same key: the log outgrows the
        // database, so snapshots follow.
        let v: Vec<u8> = (0..6000).map(|_| rng.next_u64() as u8).collect();
        o.put("k", &v).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let h = s.history("o").unwrap();
        if h.epochs[0].snapshots.len() >= 2 && i > 20 {
            break;
        }
    }
    // Small commits until two segments follow the last snapshot.
    for _ in 0..50 {
        o.put("k", b"tail").unwrap();
        o.end_turn().unwrap().wait().unwrap();
        let h = s.history("o").unwrap();
        let ep = &h.epochs[0];
        let last_snap = ep.snapshots.last().unwrap().seq;
        if ep.segments.iter().filter(|g| g.first > last_snap).count() >= 2 {
            break;
        }
    }
    drop(o);
    s
}

fn bucket_file(dir: &std::path::Path, key: &object_store::path::Path) -> std::path::PathBuf {
    dir.join("bucket").join(key.as_ref())
}

#[test]
fn a_gap_a_snapshot_bridges_is_not_missing_commits() {
    let dir = tempfile::tempdir().unwrap();
    let s = history_with_two_snapshots(dir.path());
    let h = s.history("o").unwrap();
    let ep = &h.epochs[0];
    assert!(ep.snapshots.len() >= 2, "{ep:?}");
    let snap = ep.snapshots[1].seq;
    // A segment wholly between the base and the second snapshot goes, as
    // a reopen whose WAL no longer met the bucket would leave it.
    let gone = ep
        .segments
        .iter()
        .find(|g| g.first > ep.snapshots[0].seq && g.last <= snap)
        .expect("a segment before the second snapshot")
        .clone();
    std::fs::remove_file(bucket_file(dir.path(), &gone.key)).unwrap();
    let rep = s.verify("o").unwrap();
    assert!(rep.is_ok(), "{rep:?}");
    let e = &rep.epochs[0];
    assert!(
        e.bridged
            .iter()
            .any(|(a, b)| *a <= gone.first && gone.last <= *b),
        "{e:?}"
    );
    let newest = ep.last_seq().unwrap();
    assert_eq!(e.restorable.unwrap().1.seq(), newest, "{e:?}");
}

#[test]
fn a_gap_nothing_bridges_is_still_reported() {
    let dir = tempfile::tempdir().unwrap();
    let s = history_with_two_snapshots(dir.path());
    let h = s.history("o").unwrap();
    let ep = &h.epochs[0];
    let last_snap = ep.snapshots.last().unwrap().seq;
    // A segment after the last snapshot, with more after it.
    let newest = ep.last_seq().unwrap();
    let gone = ep
        .segments
        .iter()
        .find(|g| g.first > last_snap && g.last < newest)
        .expect("a segment after the last snapshot")
        .clone();
    std::fs::remove_file(bucket_file(dir.path(), &gone.key)).unwrap();
    let rep = s.verify("o").unwrap();
    assert!(!rep.is_ok(), "{rep:?}");
    let e = &rep.epochs[0];
    assert!(e.problems.iter().any(|p| p.contains("missing")), "{e:?}");
    assert!(e.restorable.unwrap().1.seq() < gone.first);
}
