//! Power cuts at every I/O step of an object's files, through the crash
//! images of `amber::testing::FaultVfs`: the cut lands just before the
//! n-th write, sync or truncate of the object's database or WAL, for
//! n = 1, 2, ... until the workload runs past its last one. The workload
//! commits turns (a KV write and a SQL row together) with checkpoints
//! every few pages, so cuts land in commits, in the middle of checkpoints
//! (database pages half written, the WAL about to be reset) and in WAL
//! restarts.
//!
//! At the cut every object file and the store journal freeze (their writes
//! and syncs fail from then on). Once the store is dropped, every unsynced
//! write of the object's files is undone, leaving what the last syncs made
//! durable, and the journal files are marked as from an earlier boot, as a
//! reboot would leave them (their unsynced tails are kept: one outcome a
//! real cut allows; `tests/power_loss.rs` cuts those tails).
//!
//! After the reboot: every acknowledged turn is there, each whole, plus at
//! most the turn that was in flight; nothing else; `integrity_check`
//! passes; the object takes writes.

use std::time::Duration;

use amber::testing::FaultVfs;
use amber::{Object, Store};

#[path = "support/faults.rs"]
mod faults;

use faults::{create_table, reboot_journal, turn, value, vfs_config as config};

const TURNS: u32 = 10;

fn present(o: &mut Object) -> Vec<u32> {
    faults::present(o, TURNS)
}

/// One run with the cut at the n-th step: `None` when the workload ended
/// before it, else the unsynced writes the cut undid.
fn run(n: u64) -> Option<usize> {
    let dir = tempfile::tempdir().unwrap();
    {
        // The object exists (and is durable) before the cuts begin.
        let store = Store::open(config(dir.path())).unwrap();
        let mut o = store.open_object("room").unwrap();
        create_table(&mut o).unwrap();
    }
    FaultVfs::track(true, "/objects/");
    FaultVfs::cut_at(n);
    let mut acked = Vec::new();
    let mut in_flight = None;
    {
        let store = Store::open(config(dir.path())).unwrap();
        match store.open_object("room") {
            Ok(mut o) => {
                for i in 0..TURNS {
                    match turn(&mut o, i) {
                        Ok(()) => acked.push(i),
                        Err(_) => {
                            in_flight = Some(i);
                            break;
                        }
                    }
                }
            }
            Err(e) => assert!(FaultVfs::was_cut(), "n={n}: open failed: {e}"),
        }
    }
    let cut = FaultVfs::was_cut();
    let undone = FaultVfs::power_off();
    if !cut {
        return None;
    }
    reboot_journal(dir.path());
    let store = Store::open(config(dir.path()))
        .unwrap_or_else(|e| panic!("n={n}: the store did not open after the cut: {e}"));
    let mut o = store
        .open_object("room")
        .unwrap_or_else(|e| panic!("n={n}: the object did not open after the cut: {e}"));
    let have = present(&mut o);
    for i in &acked {
        assert!(
            have.contains(i),
            "n={n}: acknowledged turn {i} lost ({undone} writes undone; have {have:?})"
        );
    }
    for i in &have {
        assert!(
            acked.contains(i) || in_flight == Some(*i),
            "n={n}: turn {i} appeared, never acknowledged nor in flight"
        );
    }
    o.integrity_check()
        .unwrap_or_else(|e| panic!("n={n}: integrity check: {e}"));
    turn(&mut o, TURNS - 1).ok();
    Some(undone)
}

#[test]
fn a_power_cut_at_every_step_of_commits_and_checkpoints_loses_nothing_acknowledged() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let (mut n, mut undone, mut lossy) = (1, 0, 0);
    while let Some(u) = run(n) {
        undone += u;
        lossy += usize::from(u > 0);
        n += 1;
        assert!(n < 5000, "the workload never ran out of steps");
    }
    eprintln!(
        "power cut at each of {} steps; {lossy} cuts undid unsynced writes ({undone} in all)",
        n - 1
    );
    assert!(n > 10, "only {} steps: the VFS is not in the path", n - 1);
    // Most cuts must lose something, or the images model nothing.
    assert!(
        lossy * 2 > n as usize,
        "only {lossy} of {} cuts lost a write",
        n - 1
    );
}

/// Creation under the knife: each step of the workload creates a new
/// object (a commit through the journal, no fsync of its own) and commits
/// to it; the cut lands at every write, sync and truncate of any object's
/// files. Every object whose first turn was acknowledged is there with it.
#[test]
fn a_power_cut_at_every_step_of_object_creation_keeps_every_acknowledged_object() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let mut n = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        FaultVfs::track(true, "/objects/");
        FaultVfs::cut_at(n);
        let mut acked = Vec::new();
        {
            let store = Store::open(config(dir.path())).unwrap();
            for i in 0..6u32 {
                let r = store.open_object(&format!("obj{i}")).and_then(|mut o| {
                    o.put("k", &value(i))?;
                    o.end_turn()?.wait_timeout(Duration::from_secs(30))?;
                    Ok(())
                });
                match r {
                    Ok(()) => acked.push(i),
                    Err(_) => break,
                }
            }
        }
        let cut = FaultVfs::was_cut();
        FaultVfs::power_off();
        if !cut {
            break;
        }
        reboot_journal(dir.path());
        let store = Store::open(config(dir.path()))
            .unwrap_or_else(|e| panic!("n={n}: the store did not open after the cut: {e}"));
        for i in &acked {
            let mut o = store
                .open_object(&format!("obj{i}"))
                .unwrap_or_else(|e| panic!("n={n}: obj{i} did not open: {e}"));
            assert_eq!(
                o.get("k").unwrap().as_deref(),
                Some(&value(*i)[..]),
                "n={n}: obj{i}'s acknowledged first turn is lost"
            );
            o.integrity_check()
                .unwrap_or_else(|e| panic!("n={n}: obj{i}: integrity check: {e}"));
        }
        n += 1;
        assert!(n < 5000, "the workload never ran out of steps");
    }
    eprintln!("power cut at each of {} creation steps", n - 1);
    assert!(n > 6, "only {} steps: the VFS is not in the path", n - 1);
}

/// A journal that lacks a commit an object needs, under later records an
/// fsync vouched for, is refused, not skipped: after a power cut that
/// took the object's unsynced WAL, one whole journal file is removed (as
/// a lost or deleted file would be), and `Store::open` fails with
/// `Corruption` naming the object, rather than opening it without the
/// acknowledged commits of the lost file.
#[test]
fn a_journal_gap_under_vouched_records_is_refused_as_corruption() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let dir = tempfile::tempdir().unwrap();
    // Small journal files, and no checkpoint: the commits live in the WAL
    // and the journal only.
    let config = |d: &std::path::Path| {
        let mut c =
            config(d).with_journal(amber::JournalOptions::default().with_file_bytes(64 << 10));
        c.tuning.checkpoint_pages = 100_000;
        c
    };
    let id = {
        let store = Store::open(config(dir.path())).unwrap();
        let mut o = store.open_object("room").unwrap();
        create_table(&mut o).unwrap();
        o.id()
    };
    let journal = dir.path().join("journal");
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
            .collect();
        v.sort();
        v
    };
    let before = files(&journal);
    FaultVfs::track(true, "/objects/");
    {
        let store = Store::open(config(dir.path())).unwrap();
        let mut o = store.open_object("room").unwrap();
        for i in 0..TURNS {
            turn(&mut o, i).unwrap();
        }
        for i in 0..40u32 {
            o.put(&format!("extra{i}"), &value(i)).unwrap();
            o.end_turn().unwrap().wait().unwrap();
        }
        FaultVfs::cut_now();
    }
    let undone = FaultVfs::power_off();
    assert!(undone > 0, "the cut took nothing");
    let new: Vec<_> = files(&journal)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    assert!(new.len() >= 2, "the commits fit one journal file: {new:?}");
    reboot_journal(dir.path());
    std::fs::remove_file(&new[0]).unwrap();
    let e = Store::open(config(dir.path()))
        .and_then(|s| s.open_object("room").map(|_| ()))
        .unwrap_err();
    eprintln!("refused: {e}");
    assert_eq!(e.kind(), amber::ErrorKind::Corruption, "{e}");
    assert!(e.message().contains(&id.to_string()), "{e}");
}
