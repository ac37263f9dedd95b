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
//! and syncs fail from then on). Once the store is dropped, the object
//! files go back to a crash image, and the journal files are marked as
//! from an earlier boot, as a reboot would leave them (their unsynced
//! tails are kept: one outcome a real cut allows; `tests/power_loss.rs`
//! cuts those tails). Odd steps take the harshest image: every unsynced
//! write undone and every directory entry made since its directory's last
//! fsync gone. Even steps take a seeded one: each unsynced write survives
//! or not, in any combination, and each unsynced entry may vanish.
//! `AMBER_VFS_SEEDS=N` runs N more seeds, each a random step and a random
//! image.
//!
//! A third sweep runs with small journal files, so sealed files retire
//! during the workload: its cuts land among the retire thread's fsyncs of
//! the object's files (counted as steps too) and journal removals, with
//! and without checkpoints (every third step; `AMBER_VFS_STRIDE=1` for
//! all). Further sweeps cut deletes and a name's reuse, with the catalog
//! in the images, and `restore_on_next_open`. Skipping the WAL's fsync before a retirement
//! fails it (checked by hand: "the store journal lacks commit 2").
//!
//! After the reboot: every acknowledged turn is there, each whole, plus at
//! most the turn that was in flight; nothing else; `integrity_check`
//! passes; the object takes writes.

use std::time::Duration;

use amber::testing::{FaultVfs, PowerOff, SplitMix};
use amber::Store;

#[path = "support/faults.rs"]
mod faults;

use faults::{create_table, reboot_journal, turn, turn_of, value, vfs_config as config};

const TURNS: u32 = 10;

/// The crash image for a cut: the harshest, or one drawn from a seed.
fn power_off(seed: Option<u64>) -> PowerOff {
    match seed {
        Some(s) => FaultVfs::power_off_seeded(s),
        None => FaultVfs::power_off(),
    }
}

/// The image for the n-th step of a sweep: odd steps the harshest, even
/// steps a seeded one.
fn image_for(n: u64) -> Option<u64> {
    n.is_multiple_of(2).then_some(n)
}

/// One run with the cut at the n-th step: `None` when the workload ended
/// before it, else what the cut's image did.
fn run(n: u64, seed: Option<u64>) -> Option<PowerOff> {
    run_with(n, seed, config, value, &mut 0)
}

/// As [`run`], with the store's config from `config` and the turns'
/// values from `value`; adds the journal files the store retired before
/// the cut to `retired`.
fn run_with(
    n: u64,
    seed: Option<u64>,
    config: fn(&std::path::Path) -> amber::Config,
    value: fn(u32) -> Vec<u8>,
    retired: &mut u64,
) -> Option<PowerOff> {
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
                    match turn_of(&mut o, i, value) {
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
        *retired += store.journal_stats().retired_files;
    }
    let cut = FaultVfs::was_cut();
    let image = power_off(seed);
    if !cut {
        return None;
    }
    reboot_journal(dir.path());
    let store = Store::open(config(dir.path()))
        .unwrap_or_else(|e| panic!("n={n} {seed:?}: the store did not open after the cut: {e}"));
    let mut o = store.open_object("room").unwrap_or_else(|e| {
        panic!("n={n} {seed:?}: the object did not open after the cut: {e} ({image:?})")
    });
    let have = faults::present_of(&mut o, TURNS, value);
    for i in &acked {
        assert!(
            have.contains(i),
            "n={n} {seed:?}: acknowledged turn {i} lost ({image:?}; have {have:?})"
        );
    }
    for i in &have {
        assert!(
            acked.contains(i) || in_flight == Some(*i),
            "n={n}: turn {i} appeared, never acknowledged nor in flight"
        );
    }
    o.integrity_check()
        .unwrap_or_else(|e| panic!("n={n} {seed:?}: integrity check: {e}"));
    turn_of(&mut o, TURNS - 1, value).ok();
    Some(image)
}

#[test]
fn a_power_cut_at_every_step_of_commits_and_checkpoints_loses_nothing_acknowledged() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let (mut n, mut undone, mut kept, mut lossy, mut mixed) = (1, 0, 0, 0, 0);
    while let Some(p) = run(n, image_for(n)) {
        undone += p.undone;
        kept += p.kept;
        lossy += usize::from(p.undone > 0);
        mixed += usize::from(p.undone > 0 && p.kept > 0);
        n += 1;
        assert!(n < 5000, "the workload never ran out of steps");
    }
    eprintln!(
        "power cut at each of {} steps; {lossy} cuts undid unsynced writes ({undone} in all), \
         {mixed} of them kept others ({kept} in all)",
        n - 1
    );
    assert!(n > 10, "only {} steps: the VFS is not in the path", n - 1);
    // Most cuts must lose something, or the images model nothing; and the
    // seeded images must mix survivors with losses.
    assert!(
        lossy * 2 > n as usize,
        "only {lossy} of {} cuts lost a write",
        n - 1
    );
    assert!(
        mixed * 5 > n as usize,
        "only {mixed} cuts kept part of what was unsynced"
    );
}

/// Small journal files, one kept: sealed files retire during the
/// workload, each after the retire thread fsyncs its objects' files (or a
/// checkpoint made them durable), so cuts land among those fsyncs and the
/// removals too.
fn retiring(dir: &std::path::Path) -> amber::Config {
    config(dir).with_journal(
        amber::JournalOptions::default()
            .with_file_bytes(64 << 10)
            .with_keep_bytes(64 << 10),
    )
}

/// As [`retiring`], with no checkpoints: every retirement must fsync the
/// object's WAL itself.
fn retiring_uncheckpointed(dir: &std::path::Path) -> amber::Config {
    let mut c = retiring(dir);
    c.tuning.checkpoint_pages = 100_000;
    c
}

#[test]
fn a_power_cut_at_every_step_of_journal_retirement_loses_nothing_acknowledged() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    // The longest sweep (about 600 steps): CI cuts at every third step;
    // AMBER_VFS_STRIDE=1 cuts at every one.
    let stride: u64 = std::env::var("AMBER_VFS_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    for config in [retiring, retiring_uncheckpointed] {
        let (mut n, mut runs, mut retired, mut lossy) = (1, 0, 0, 0);
        while let Some(p) = run_with(n, image_for(n), config, faults::noise, &mut retired) {
            lossy += usize::from(p.undone > 0);
            runs += 1;
            n += stride;
            assert!(n < 5000, "the workload never ran out of steps");
        }
        eprintln!(
            "power cut at every {stride} of {} steps with retiring journal files ({runs} cuts): \
             {retired} files retired before cuts, {lossy} cuts undid unsynced writes",
            n - stride
        );
        // The retire thread runs beside the workload; it must have won
        // some of the races for the cuts to land among its steps.
        assert!(retired > 0, "the journal retired no file in {runs} runs");
    }
}

/// The long form: `AMBER_VFS_SEEDS` seeds (default 8), each a cut at a
/// random step of the same workload and a random crash image.
#[test]
fn a_power_cut_at_a_random_step_with_a_random_image_loses_nothing_acknowledged() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let seeds: u64 = std::env::var("AMBER_VFS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let first: u64 = std::env::var("AMBER_VFS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // The workload's length, from one run without a cut.
    assert!(run(u64::MAX, None).is_none());
    let steps = FaultVfs::tracked();
    assert!(steps > 10, "only {steps} steps: the VFS is not in the path");
    let (mut cuts, mut undone, mut kept, mut vanished) = (0, 0, 0, 0);
    for seed in first..first + seeds {
        let n = 1 + SplitMix::new(seed ^ 0xC0FFEE).below(steps);
        if let Some(p) = run(n, Some(seed)) {
            cuts += 1;
            undone += p.undone;
            kept += p.kept;
            vanished += p.vanished;
        }
    }
    eprintln!(
        "{seeds} seeds from {first} over {steps} steps: {cuts} cuts, {undone} unsynced writes \
         undone, {kept} kept, {vanished} entries vanished"
    );
    assert!(
        cuts * 2 > seeds,
        "only {cuts} of {seeds} seeds cut the power"
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
    let (mut n, mut vanished) = (1, 0);
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
        let image = power_off(image_for(n));
        vanished += image.vanished;
        if !cut {
            break;
        }
        reboot_journal(dir.path());
        let store = Store::open(config(dir.path()))
            .unwrap_or_else(|e| panic!("n={n}: the store did not open after the cut: {e}"));
        for i in &acked {
            let mut o = store
                .open_object(&format!("obj{i}"))
                .unwrap_or_else(|e| panic!("n={n}: obj{i} did not open: {e} ({image:?})"));
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
    eprintln!(
        "power cut at each of {} creation steps; {vanished} unsynced entries vanished",
        n - 1
    );
    assert!(n > 6, "only {} steps: the VFS is not in the path", n - 1);
    // New objects' directories and files are made without an fsync of
    // their own: the images must lose some of them.
    assert!(vanished > 0, "no cut lost a directory entry");
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
    let undone = FaultVfs::power_off().undone;
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

/// The turns below `turns` whose KV value object `o` holds (each whole).
fn keys_present(o: &mut amber::Object, turns: u32) -> Vec<u32> {
    (0..turns)
        .filter(|i| match o.get(&format!("k{i}")).unwrap() {
            Some(v) => {
                assert_eq!(v[..], value(*i)[..], "k{i} is damaged");
                true
            }
            None => false,
        })
        .collect()
}

/// Deletion under the knife, with the store catalog in the crash images
/// too (it opens through the VFS; the whole data directory is tracked):
/// two objects hold three acknowledged turns each; then `a` is deleted,
/// its name reused for a new object with one turn, and `b` is deleted. The
/// cut lands at every write, sync, truncate and removal. After the reboot
/// each object is whole or gone: an acknowledged delete never comes back,
/// an acknowledged turn of the new `a` is there, and nothing is half.
#[test]
fn a_power_cut_at_every_step_of_deletes_and_reuse_leaves_each_object_whole_or_gone() {
    use amber::BucketHistory::Keep;
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let (mut n, mut restored) = (1, 0);
    loop {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(config(dir.path())).unwrap();
            for name in ["a", "b"] {
                let mut o = store.open_object(name).unwrap();
                for i in 0..3 {
                    o.put(&format!("k{i}"), &value(i)).unwrap();
                    o.end_turn().unwrap().wait().unwrap();
                }
            }
        }
        let data = format!("{}/", dir.path().display());
        FaultVfs::track(true, &data);
        FaultVfs::cut_at(n);
        let (mut del_a, mut reused, mut del_b) = (false, false, false);
        match Store::open(config(dir.path())) {
            Ok(store) => {
                del_a = store.delete_object("a", Keep).is_ok();
                reused = del_a
                    && store
                        .open_object("a")
                        .and_then(|mut o| {
                            o.put("k7", &value(7))?;
                            o.end_turn()?.wait_timeout(Duration::from_secs(30))?;
                            Ok(())
                        })
                        .is_ok();
                del_b = reused && store.delete_object("b", Keep).is_ok();
            }
            Err(e) => assert!(FaultVfs::was_cut(), "n={n}: open failed: {e}"),
        }
        let cut = FaultVfs::was_cut();
        let image = power_off(image_for(n));
        restored += image.restored;
        if !cut {
            break;
        }
        reboot_journal(dir.path());
        let store = Store::open(config(dir.path()))
            .unwrap_or_else(|e| panic!("n={n}: the store did not open after the cut: {e}"));
        let ctx =
            format!("n={n} (a deleted {del_a}, reused {reused}, b deleted {del_b}; {image:?})");
        let mut a = store
            .open_object("a")
            .unwrap_or_else(|e| panic!("{ctx}: a did not open: {e}"));
        let have = keys_present(&mut a, 8);
        match (del_a, reused) {
            (true, true) => assert_eq!(have, [7], "{ctx}"),
            (true, false) => assert!(have.is_empty() || have == [7], "{ctx}: a holds {have:?}"),
            _ => assert!(
                have == [0, 1, 2] || have.is_empty(),
                "{ctx}: a holds {have:?}"
            ),
        }
        a.integrity_check()
            .unwrap_or_else(|e| panic!("{ctx}: a: integrity check: {e}"));
        let mut b = store
            .open_object("b")
            .unwrap_or_else(|e| panic!("{ctx}: b did not open: {e}"));
        let have = keys_present(&mut b, 3);
        if del_b {
            assert!(have.is_empty(), "{ctx}: deleted b came back with {have:?}");
        } else {
            assert!(
                have == [0, 1, 2] || have.is_empty(),
                "{ctx}: b holds {have:?}"
            );
        }
        n += 1;
        assert!(n < 5000, "the workload never ran out of steps");
    }
    eprintln!(
        "power cut at each of {} steps of deletes and a reuse; {restored} removed files came back",
        n - 1
    );
    assert!(n > 10, "only {} steps: the VFS is not in the path", n - 1);
    assert!(restored > 0, "no cut brought a removed file back");
}

/// `restore_on_next_open` under the knife: an object with five
/// acknowledged turns at `Remote` on the default `file://` bucket (not in
/// the crash images: it stands for remote storage) is told to restore to
/// its second turn, then reopened with the cut at every step of the
/// restore (the rebuilt database opens through the VFS; removals, the
/// rename and the marker's removal are steps) and of a turn after it.
/// After the reboot the next open finishes the restore if it was cut
/// short: the object holds exactly turns 0 and 1, plus the turn after
/// the restore if it was acknowledged (or in flight).
#[test]
fn a_power_cut_at_every_step_of_a_restore_on_next_open_lands_on_the_target() {
    FaultVfs::register();
    let _one = FaultVfs::exclusive();
    let remote = |d: &std::path::Path| {
        let mut c = config(d)
            .with_bucket(amber::BucketConfig::Default)
            .with_durability(amber::DurabilityLevel::Remote);
        c.tuning.checkpoint_pages = 8;
        c
    };
    let (mut n, mut restored) = (1, 0);
    loop {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(remote(dir.path())).unwrap();
            let mut o = store.open_object("room").unwrap();
            let mut target = None;
            for i in 0..5 {
                o.put(&format!("k{i}"), &value(i)).unwrap();
                o.end_turn().unwrap().wait().unwrap();
                if i == 1 {
                    target = Some(o.current_bookmark());
                }
            }
            o.restore_on_next_open(target.unwrap()).unwrap();
        }
        FaultVfs::track(true, &format!("{}/", dir.path().display()));
        FaultVfs::cut_at(n);
        let (mut opened, mut acked) = (false, false);
        if let Ok(store) = Store::open(remote(dir.path())) {
            if let Ok(mut o) = store.open_object("room") {
                opened = true;
                o.put("k9", &value(9)).unwrap();
                acked = o
                    .end_turn()
                    .and_then(|t| t.wait_timeout(Duration::from_secs(30)))
                    .is_ok();
            }
        }
        let cut = FaultVfs::was_cut();
        let image = power_off(image_for(n));
        restored += image.restored;
        if !cut {
            assert!(opened && acked, "the workload failed with no cut");
            break;
        }
        reboot_journal(dir.path());
        let ctx = format!("n={n} (opened {opened}, turn 9 acknowledged {acked}; {image:?})");
        let store = Store::open(remote(dir.path()))
            .unwrap_or_else(|e| panic!("{ctx}: the store did not open after the cut: {e}"));
        let mut o = store
            .open_object("room")
            .unwrap_or_else(|e| panic!("{ctx}: the object did not open: {e}"));
        let have = keys_present(&mut o, 10);
        if acked {
            assert_eq!(have, [0, 1, 9], "{ctx}");
        } else {
            assert!(
                have == [0, 1] || have == [0, 1, 9],
                "{ctx}: the object holds {have:?}"
            );
        }
        o.integrity_check()
            .unwrap_or_else(|e| panic!("{ctx}: integrity check: {e}"));
        n += 1;
        assert!(n < 5000, "the workload never ran out of steps");
    }
    eprintln!(
        "power cut at each of {} steps of a restore on open; {restored} removals or renames undone",
        n - 1
    );
    assert!(n > 10, "only {} steps: the VFS is not in the path", n - 1);
    assert!(restored > 0, "no cut undid a removal or rename");
}
