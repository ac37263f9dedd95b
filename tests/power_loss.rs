//! Power loss at `Local` durability, simulated on the WAL: what a power cut
//! can take is any byte written after the last fsync. A ticket for commit
//! n resolves only after an fsync that came after commit n's frames were
//! written, so every byte of the WAL up to its length just after commit n
//! is durable from then on; everything past it may be lost, cut short, or
//! left as garbage.
//!
//! Each cut copies the files as they are, keeps the durable prefix of the
//! WAL intact, and then truncates the rest at a random point and
//! optionally scribbles over what remains of it. The copy must open, hold
//! every acknowledged commit, be exactly the model's state at some commit
//! (never a torn one), and pass `integrity_check`.
//!
//! Scope: no checkpoint runs during the test (the WAL only grows and the
//! database file is untouched after creation), so this covers the WAL tail,
//! not a cut in the middle of a checkpoint or reordered writes across
//! files. docs/durability.md says what a full crash VFS would add.
//!
//! `AMBER_POWER_SEEDS` (default 12) sets the number of seeded runs.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use amber::testing::SplitMix;
use amber::{BucketConfig, Config, ListOptions, Store, Tuning};

type Kv = BTreeMap<String, Vec<u8>>;

fn config(dir: &Path) -> Config {
    let mut cfg = Config::new(dir)
        .with_bucket(BucketConfig::Disabled)
        .with_tuning(Tuning {
            // No checkpoint: the WAL only grows during the test.
            checkpoint_pages: u32::MAX,
            ..Tuning::default()
        });
    cfg.sync_threads = 1;
    cfg
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn cut(
    seed: u64,
    rng: &mut SplitMix,
    root: &Path,
    data: &Path,
    rel_obj: &Path,
    durable: u64,
    acked: u64,
    model: &[Kv],
) {
    let copy = root.join(format!("cut-{}", rng.next_u64()));
    copy_tree(data, &copy);
    let wal = copy.join(rel_obj).join("db-wal");
    let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert!(
        len >= durable,
        "seed {seed}: WAL shorter than its durable prefix"
    );
    // Lose a random part of the unsynced tail, then maybe garble some of
    // what is left of it.
    let keep = durable + rng.below(len - durable + 1);
    let mut f = OpenOptions::new().write(true).open(&wal).unwrap();
    f.set_len(keep).unwrap();
    if keep > durable && rng.chance(500) {
        let at = durable + rng.below(keep - durable);
        let n = (1 + rng.below(4096)).min(keep - at);
        let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&junk).unwrap();
    }
    drop(f);

    let store = Store::open(config(&copy)).unwrap();
    let mut o = store
        .open_object("p")
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after the cut: {e}"));
    o.integrity_check()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let seq = o.seq();
    assert!(
        seq >= acked,
        "seed {seed}: acknowledged commit {acked} lost (found {seq})"
    );
    let kv: Kv = o
        .list(&ListOptions::default())
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(kv, model[seq as usize], "seed {seed}: torn state at {seq}");
    drop(o);
    drop(store);
    std::fs::remove_dir_all(&copy).unwrap();
}

fn run(seed: u64) -> usize {
    let mut rng = SplitMix::new(seed);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = Store::open(config(&data)).unwrap();
    let mut o = store.open_object("p").unwrap();
    let rel_obj = o.dir().strip_prefix(&data).unwrap().to_path_buf();
    let wal = o.dir().join("db-wal");
    let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    let mut model: Vec<Kv> = vec![Kv::new(); o.seq() as usize + 1];
    let mut live = Kv::new();
    let (mut acked, mut durable) = (o.seq(), wal_len());
    let mut cuts = 0;
    for i in 0..40u64 {
        for _ in 0..1 + rng.below(4) {
            let k = format!("k{}", rng.below(12));
            if rng.chance(200) {
                o.delete(&k).unwrap();
                live.remove(&k);
            } else {
                let v: Vec<u8> = (0..rng.below(6000)).map(|j| (i + j) as u8).collect();
                o.put(&k, &v).unwrap();
                live.insert(k, v);
            }
        }
        let t = o.end_turn().unwrap();
        assert_eq!(o.seq() as usize, model.len());
        model.push(live.clone());
        // The WAL's length now covers this commit's frames.
        let len_after = wal_len();
        if rng.chance(600) {
            let n = t.wait().unwrap();
            // Once the ticket resolves, those bytes are on disk.
            acked = n;
            durable = len_after;
        }
        if rng.chance(250) {
            cut(
                seed,
                &mut rng,
                root.path(),
                &data,
                &rel_obj,
                durable,
                acked,
                &model,
            );
            cuts += 1;
        }
    }
    cut(
        seed,
        &mut rng,
        root.path(),
        &data,
        &rel_obj,
        durable,
        acked,
        &model,
    );
    cuts + 1
}

#[test]
fn a_power_cut_keeps_every_acknowledged_commit_and_tears_none() {
    let seeds: u64 = std::env::var("AMBER_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let mut cuts = 0;
    for seed in 1..=seeds {
        cuts += run(seed);
    }
    eprintln!("{seeds} seeds, {cuts} power cuts");
}
