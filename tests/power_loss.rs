//! Power loss at `Local` durability, simulated on the files: what a power
//! cut can take is any byte written after the last fsync.
//!
//! With the store journal (the default), a ticket resolves once the
//! journal is fsynced past the commit's record; objects' WALs are never
//! fsynced on the commit path. So a cut may take any tail of every WAL
//! (no checkpoint runs here, so no byte of a WAL was ever fsynced), and
//! any tail of the journal past its length when the last ticket resolved.
//! Each cut copies the files, truncates every WAL and the journal's
//! unsynced part at random points, optionally scribbles over what is left
//! of those tails, and marks the journal as written in an earlier boot
//! (which a real power cut implies). The copy must open, replay the
//! journal, hold every acknowledged commit of every object, be exactly
//! the model's state at some commit (never a torn one), and pass
//! `integrity_check`.
//!
//! The same cuts run with the journal disabled, where each object's WAL
//! is fsynced by itself: there the durable part is the WAL's prefix.
//!
//! The objects are created in the test, so with the journal they are
//! created without an fsync: a cut may also take their database file,
//! their name file or their whole directory, which replay rebuilds from
//! the journaled creation commit.
//!
//! Scope: no checkpoint runs during the test, so this covers the WAL and
//! journal tails, not a cut in the middle of a checkpoint or reordered
//! writes within a file. docs/durability.md says what a crash VFS adds.
//!
//! `AMBER_POWER_SEEDS` (default 12) sets the number of seeded runs.

#[path = "support/faults.rs"]
mod faults;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use amber::testing::SplitMix;
use amber::{BucketConfig, Config, JournalOptions, ListOptions, Store, Tuning};
use faults::from_earlier_boot;

type Kv = BTreeMap<String, Vec<u8>>;

const OBJECTS: usize = 3;

fn config(dir: &Path, journal: bool) -> Config {
    let cfg = Config::new(dir)
        .with_bucket(BucketConfig::Disabled)
        .with_tuning(Tuning {
            // No checkpoint: the WALs only grow during the test.
            checkpoint_pages: u32::MAX,
            ..Tuning::default()
        })
        .with_sync_threads(1);
    if journal {
        // Small files, so cuts land across rotations; a budget no test
        // reaches, since a retirement fsyncs WALs behind the test's back.
        cfg.with_journal(
            JournalOptions::default()
                .with_file_bytes(64 << 10)
                .with_keep_bytes(1 << 40),
        )
    } else {
        cfg.with_journal(JournalOptions::disabled())
    }
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

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The store journal's files, oldest first.
fn journal_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("journal"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Where a journal file's valid records end, walking the documented
/// layout (docs/format.md): a 32-byte header, then records of a 4-byte
/// body length, a 4-byte CRC-32 of the body, and the body.
fn records_end(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap_or_default();
    let mut at = 32usize;
    while at + 8 <= b.len() {
        let n = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap());
        if n == 0 || at + 8 + n > b.len() || crc32fast::hash(&b[at + 8..at + 8 + n]) != crc {
            break;
        }
        at += 8 + n;
    }
    at.min(b.len()) as u64
}

/// How far an fsync is known to have covered a journal file: the largest
/// `synced_to` (the last 8 bytes of a record's body, format version 2)
/// among its valid records. A cut cannot touch bytes before it, since an
/// fsync the test did not wait for may have covered more than the test
/// saw acknowledged.
fn vouched(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap_or_default();
    let mut at = 32usize;
    let mut most = 0u64;
    while at + 8 <= b.len() {
        let n = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap());
        if n < 8 || at + 8 + n > b.len() || crc32fast::hash(&b[at + 8..at + 8 + n]) != crc {
            break;
        }
        let end = at + 8 + n;
        most = most.max(u64::from_le_bytes(b[end - 8..end].try_into().unwrap()));
        at = end;
    }
    most
}

/// Each journal file's valid length now.
fn journal_ends(data: &Path) -> BTreeMap<String, u64> {
    journal_files(data)
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, records_end(&p))
        })
        .collect()
}

/// Loses a random part of `path` between `durable` and `end`, then maybe
/// garbles some of what is left of that tail.
fn lose_tail(rng: &mut SplitMix, path: &Path, durable: u64, end: u64) {
    assert!(
        end >= durable,
        "{} shorter than its durable prefix",
        path.display()
    );
    let keep = durable + rng.below(end - durable + 1);
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(keep).unwrap();
    if keep > durable && rng.chance(500) {
        let at = durable + rng.below(keep - durable);
        let n = (1 + rng.below(4096)).min(keep - at);
        let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(&junk).unwrap();
    }
}

struct Run {
    seed: u64,
    journal: bool,
    root: PathBuf,
    data: PathBuf,
    rel: Vec<PathBuf>,
    models: Vec<Vec<Kv>>,
    acked: Vec<u64>,
    /// Per object, its WAL's durable length (journal disabled only).
    wal_durable: Vec<u64>,
    /// Each journal file's durable length.
    journal_durable: BTreeMap<String, u64>,
    /// The catalog WAL's length once the store had opened (synced then).
    catalog_durable: u64,
}

impl Run {
    fn cut(&self, rng: &mut SplitMix, retired: u64) {
        let seed = self.seed;
        let copy = self.root.join(format!("cut-{}", rng.next_u64()));
        copy_tree(&self.data, &copy);
        for (i, rel) in self.rel.iter().enumerate() {
            let wal = copy.join(rel).join("db-wal");
            let durable = if self.journal { 0 } else { self.wal_durable[i] };
            lose_tail(rng, &wal, durable, len(&wal));
        }
        if self.journal {
            // The objects were created without an fsync (their creation
            // commit is in the journal) and nothing has synced them since:
            // the cut may take their database or whole directory.
            for rel in &self.rel {
                let dir = copy.join(rel);
                match rng.below(5) {
                    0 => OpenOptions::new()
                        .write(true)
                        .open(dir.join("db"))
                        .unwrap()
                        .set_len(0)
                        .unwrap(),
                    1 => std::fs::remove_file(dir.join("db")).unwrap(),
                    2 => std::fs::remove_dir_all(&dir).unwrap(),
                    _ => {}
                }
            }
            let files = journal_files(&copy);
            // Once an fsync covered records of a file, every older file
            // was fsynced whole (the sync thread syncs files oldest first,
            // and a file takes records only after the previous is sealed).
            let later_synced: Vec<bool> = (0..files.len())
                .map(|i| files[i + 1..].iter().any(|f| vouched(f) > 32))
                .collect();
            for (j, whole) in files.iter().zip(later_synced) {
                let name = j.file_name().unwrap().to_string_lossy().into_owned();
                let mut durable = self
                    .journal_durable
                    .get(&name)
                    .copied()
                    .unwrap_or(0)
                    .max(vouched(j));
                if whole {
                    durable = durable.max(records_end(j));
                }
                lose_tail(rng, j, durable.max(32), records_end(j).max(32));
                from_earlier_boot(j);
            }
        }
        // The catalog's rows were written without an fsync; the journal
        // syncs it before it retires a file, and without the journal every
        // catalog commit is synced. Its shared-memory index does not
        // survive a cut.
        let cat_wal = copy.join("catalog.db-wal");
        let cat_durable = if !self.journal || retired > 0 {
            len(&cat_wal)
        } else {
            self.catalog_durable
        };
        lose_tail(rng, &cat_wal, cat_durable, len(&cat_wal));
        let _ = std::fs::remove_file(copy.join("catalog.db-shm"));
        let store = Store::open(config(&copy, self.journal))
            .unwrap_or_else(|e| panic!("seed {seed}: store open after the cut: {e}"));
        let names: Vec<String> = store
            .list_objects()
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        for i in 0..OBJECTS {
            // An object with no acknowledged commit may be gone.
            assert!(
                self.acked[i] == 0 || names.contains(&format!("p{i}")),
                "seed {seed}: p{i} missing from the listing {names:?}"
            );
            let mut o = store
                .open_object(&format!("p{i}"))
                .unwrap_or_else(|e| panic!("seed {seed}: reopen p{i} after the cut: {e}"));
            o.integrity_check()
                .unwrap_or_else(|e| panic!("seed {seed}: p{i}: {e}"));
            let seq = o.seq();
            assert!(
                seq >= self.acked[i],
                "seed {seed}: p{i}: acknowledged commit {} lost (found {seq})",
                self.acked[i]
            );
            let kv: Kv = o
                .list(&ListOptions::default())
                .unwrap()
                .into_iter()
                .collect();
            assert_eq!(
                kv, self.models[i][seq as usize],
                "seed {seed}: p{i}: torn state at {seq}"
            );
        }
        if self.journal {
            // Replay retired the old file: nothing is left to replay twice.
            // (Reopening an object the cut took creates it anew, which
            // writes a file of this boot; the cut's files are all marked
            // as of an earlier boot, an all-zero boot id.)
            let kept: Vec<PathBuf> = journal_files(&copy)
                .into_iter()
                .filter(|f| std::fs::read(f).unwrap()[12..28].iter().all(|b| *b == 0))
                .collect();
            assert!(
                kept.is_empty(),
                "seed {seed}: replayed journal file kept: {kept:?}"
            );
        }
        drop(store);
        std::fs::remove_dir_all(&copy).unwrap();
    }
}

fn run(seed: u64, journal: bool) -> usize {
    let mut rng = SplitMix::new(seed);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = Store::open(config(&data, journal)).unwrap();
    let catalog_durable = len(&data.join("catalog.db-wal"));
    let mut objs: Vec<_> = (0..OBJECTS)
        .map(|i| store.open_object(&format!("p{i}")).unwrap())
        .collect();
    let mut run = Run {
        seed,
        journal,
        root: root.path().to_path_buf(),
        data: data.clone(),
        rel: objs
            .iter()
            .map(|o| o.dir().strip_prefix(&data).unwrap().to_path_buf())
            .collect(),
        models: objs
            .iter()
            .map(|o| vec![Kv::new(); o.seq() as usize + 1])
            .collect(),
        acked: objs.iter().map(|o| o.seq()).collect(),
        wal_durable: objs.iter().map(|o| len(&o.dir().join("db-wal"))).collect(),
        journal_durable: BTreeMap::new(),
        catalog_durable,
    };
    let mut live = vec![Kv::new(); OBJECTS];
    let mut cuts = 0;
    for i in 0..60u64 {
        let which = rng.below(OBJECTS as u64) as usize;
        let o = &mut objs[which];
        for _ in 0..1 + rng.below(4) {
            let k = format!("k{}", rng.below(12));
            if rng.chance(200) {
                o.delete(&k).unwrap();
                live[which].remove(&k);
            } else {
                let v: Vec<u8> = (0..rng.below(6000)).map(|j| (i + j) as u8).collect();
                o.put(&k, &v).unwrap();
                live[which].insert(k, v);
            }
        }
        let t = o.end_turn().unwrap();
        assert_eq!(o.seq() as usize, run.models[which].len());
        run.models[which].push(live[which].clone());
        // The files' lengths now cover this commit.
        let wal_after = len(&o.dir().join("db-wal"));
        let journal_after = if journal {
            journal_ends(&data)
        } else {
            BTreeMap::new()
        };
        if rng.chance(600) {
            let n = t.wait().unwrap();
            // Once the ticket resolves, those bytes are on disk.
            run.acked[which] = n;
            run.wal_durable[which] = wal_after;
            run.journal_durable = journal_after;
        }
        if rng.chance(250) {
            run.cut(&mut rng, store.journal_stats().retired_files);
            cuts += 1;
        }
    }
    run.cut(&mut rng, store.journal_stats().retired_files);
    if journal {
        let st = store.journal_stats();
        assert!(st.commits > 0 && st.fsyncs > 0, "seed {seed}: {st:?}");
    }
    cuts + 1
}

fn seeds() -> u64 {
    std::env::var("AMBER_POWER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// Runs every seed; returns the number of power cuts.
fn run_seeds(journal: bool) -> usize {
    let cuts = (1..=seeds()).map(|seed| run(seed, journal)).sum();
    let how = if journal {
        "store journal"
    } else {
        "per-object fsync"
    };
    eprintln!("{} seeds, {cuts} power cuts, {how}", seeds());
    cuts
}

#[test]
fn a_power_cut_keeps_every_acknowledged_commit_and_tears_none() {
    assert!(run_seeds(true) > 0);
}

#[test]
fn without_the_journal_a_power_cut_keeps_every_acknowledged_commit() {
    assert!(run_seeds(false) > 0);
}

#[test]
fn a_damaged_record_in_the_durable_journal_is_refused_not_skipped() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = Store::open(config(&data, true)).unwrap();
    let mut o = store.open_object("p0").unwrap();
    for i in 0..20u8 {
        o.put("k", &[i; 100]).unwrap();
        o.end_turn().unwrap().wait().unwrap();
    }
    let rel = o.dir().strip_prefix(&data).unwrap().to_path_buf();
    drop(o);
    drop(store);
    // A power cut took the whole WAL; the first record's body took a hit.
    std::fs::write(data.join(&rel).join("db-wal"), b"").unwrap();
    // The first record of a file that a later record proves fsynced (its
    // `synced_to` lies past it) gets damaged: bytes that were durable.
    let j = journal_files(&data)
        .into_iter()
        .find(|j| vouched(j) > 32)
        .expect("a journal file whose first record a later one vouches for");
    for f in journal_files(&data) {
        from_earlier_boot(&f);
    }
    let mut b = std::fs::read(&j).unwrap();
    b[32 + 8 + 50] ^= 0x40;
    std::fs::write(&j, b).unwrap();
    let err = match Store::open(config(&data, true)) {
        Ok(_) => panic!("a damaged journal was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), amber::ErrorKind::Corruption, "{err}");
    assert!(err.message().contains("damaged record"), "{err}");
}

#[test]
fn a_journal_file_of_a_newer_version_is_refused_not_retired() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let store = Store::open(config(&data, true)).unwrap();
    let mut o = store.open_object("p0").unwrap();
    o.put("k", b"v").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    drop(o);
    drop(store);
    // Version 3 at bytes 8..12, the header CRC-32 over 0..28 kept valid.
    let j = journal_files(&data).remove(0);
    let mut b = std::fs::read(&j).unwrap();
    b[8..12].copy_from_slice(&3u32.to_le_bytes());
    let crc = crc32fast::hash(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&j, b).unwrap();
    let err = match Store::open(config(&data, true)) {
        Ok(_) => panic!("a newer journal was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), amber::ErrorKind::Corruption, "{err}");
    assert!(err.message().contains("format version 3"), "{err}");
    assert!(j.exists(), "the newer journal file was removed");
}
