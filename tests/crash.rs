//! Crash test: a child process writes SQL and KV turns, reporting each
//! commit only after its ticket resolved; the parent kills it with SIGKILL
//! at random moments, reopens, and checks that every acknowledged turn is
//! there, that every turn is all-or-nothing, and that SQLite's integrity
//! check passes.
//!
//! The store journal runs with tiny files, so that the kills land in the
//! middle of journal appends, file rotations and retirements too; at the
//! end, the files the killed writers left behind must be retired.
//!
//! `AMBER_CRASH_ROUNDS` (default 100) and `AMBER_CRASH_SEED` control a run.

#[path = "support/child.rs"]
mod child;

use std::io::Write;
use std::time::Duration;

use amber::testing::SplitMix;
use amber::{Config, Error, ErrorKind, JournalOptions, Store, Tuning, ValueRef};

/// The child's role variable: the data directory.
const CHILD: &str = "AMBER_CRASH_CHILD";

const JOURNAL_FILE: u64 = 64 << 10;
const JOURNAL_KEEP: u64 = 128 << 10;

fn config(dir: &str) -> Config {
    Config::new(dir)
        .with_tuning(Tuning {
            // Small, so checkpoints happen under the knife too.
            checkpoint_pages: 64,
            ..Tuning::default()
        })
        .with_journal(
            JournalOptions::default()
                .with_file_bytes(JOURNAL_FILE)
                .with_keep_bytes(JOURNAL_KEEP),
        )
}

fn journal_bytes(dir: &str) -> u64 {
    std::fs::read_dir(std::path::Path::new(dir).join("journal"))
        .map(|d| d.flatten().map(|e| e.metadata().unwrap().len()).sum())
        .unwrap_or(0)
}

fn value(i: u64) -> Vec<u8> {
    let len = (i * 7919 % 6000) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

/// The writer. Runs only in the child process.
#[test]
fn crash_child_writer() {
    let Some(dir) = child::role(CHILD) else {
        return;
    };
    let store = Store::open(config(&dir)).unwrap();
    let mut o = store.open_object("crash").unwrap();
    o.exec(
        "CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, body BLOB)",
        &[],
    )
    .unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let mut next = o
        .exec("SELECT coalesce(max(i), 0) + 1 FROM t", &[])
        .unwrap()
        .one()
        .unwrap()
        .get(0)
        .unwrap()
        .as_i64()
        .unwrap() as u64;
    let mut out = std::io::stdout().lock();
    loop {
        // A few turns in flight, then wait for the last ticket: it covers
        // the earlier ones too.
        let batch = 1 + next % 4;
        let mut ticket = None;
        let mut ids = Vec::new();
        for _ in 0..batch {
            let i = next;
            next += 1;
            let v = value(i);
            o.put(&format!("k{i}"), &v).unwrap();
            o.exec(
                "INSERT INTO t (i, body) VALUES (?1, ?2)",
                &[ValueRef::Integer(i as i64), ValueRef::Blob(&v)],
            )
            .unwrap();
            if i.is_multiple_of(5) {
                // A rolled-back transaction must leave no trace.
                let _: Result<(), Error> = o.transaction(|tx| {
                    tx.put(&format!("ghost{i}"), b"x")?;
                    tx.exec(
                        "INSERT INTO t (i) VALUES (?1)",
                        &[ValueRef::Integer(-(i as i64))],
                    )?;
                    Err(Error::new(ErrorKind::InvalidInput, "roll back"))
                });
            }
            if i.is_multiple_of(7) {
                o.delete(&format!("k{}", i - 3)).unwrap();
                o.put(&format!("k{}", i - 3), &value(i - 3)).unwrap();
            }
            ids.push(i);
            ticket = Some(o.end_turn().unwrap());
        }
        ticket.unwrap().wait().unwrap();
        for i in ids {
            writeln!(out, "{i}").unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_turn() {
    if child::in_child(CHILD) {
        return;
    }
    let rounds: usize = std::env::var("AMBER_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let seed: u64 = std::env::var("AMBER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed);
    let mut rng = SplitMix::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap().to_owned();
    let mut acked_total: Vec<u64> = Vec::new();
    let mut checked_upto = 0i64;
    for round in 0..rounds {
        let writer = child::Command::test("crash_child_writer")
            .env(CHILD, &dir_s)
            .spawn();
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        let acked = writer.kill_9().numbers();
        acked_total.extend(acked);

        let store = Store::open(config(&dir_s)).unwrap();
        let mut o = store.open_object("crash").unwrap();
        o.integrity_check()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        // Aggregate checks over the whole table, then a row-by-row check of
        // what this round added (all rows every 100 rounds and at the end),
        // so a long run stays linear in its length.
        let (count, min, max) = match o.exec(
            "SELECT count(*), coalesce(min(i), 1), coalesce(max(i), 0) FROM t",
            &[],
        ) {
            Ok(c) => {
                let r = c.one().unwrap();
                let g = |k: usize| r.get(k).unwrap().as_i64().unwrap();
                (g(0), g(1), g(2))
            }
            // Killed before the writer's first commit: no table yet.
            Err(e) if e.message().contains("no such table") => (0, 1, 0),
            Err(e) => panic!("round {round}: {e}"),
        };
        assert!(min >= 1, "round {round}: a rolled-back row survived");
        // Rows are contiguous: commits land in order, none skipped.
        assert_eq!(count, max, "round {round}: a gap in 1..={max}");
        let full = round % 100 == 99 || round + 1 == rounds;
        let from = if full { 1 } else { (checked_upto - 20).max(1) };
        if max >= from {
            let rows = o
                .exec(
                    "SELECT i, body FROM t WHERE i >= ?1 ORDER BY i",
                    &[from.into()],
                )
                .unwrap()
                .to_vec()
                .unwrap();
            // Every committed turn is complete: row i exists iff key k{i} does.
            for r in rows {
                let i = r.get(0).unwrap().as_i64().unwrap();
                let body = r.get(1).unwrap().as_blob().unwrap_or_default();
                assert_eq!(body, &value(i as u64)[..], "round {round}: row {i}");
                let kv = o.get(&format!("k{i}")).unwrap();
                assert_eq!(
                    kv.as_deref(),
                    Some(&value(i as u64)[..]),
                    "round {round}: key k{i}"
                );
            }
        }
        checked_upto = max;
        let max = max as u64;
        for a in &acked_total {
            assert!(
                *a <= max,
                "round {round}: acknowledged turn {a} lost (max {max})"
            );
        }
        assert!(o
            .list(&amber::ListOptions::prefix("ghost"))
            .unwrap()
            .is_empty());
    }
    assert!(
        !acked_total.is_empty(),
        "the writer never acknowledged anything"
    );
    // The killed writers' journal files are this boot's, so they need no
    // replay; an open store retires them down to its budget.
    let store = Store::open(config(&dir_s)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while journal_bytes(&dir_s) > JOURNAL_KEEP && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        journal_bytes(&dir_s) <= JOURNAL_KEEP,
        "dead writers' journal files were not retired: {} bytes left",
        journal_bytes(&dir_s)
    );
    // And files did come and go: generations are numbered from 0, so a
    // highest number above the count of files left means retirements.
    let gens: Vec<u64> = std::fs::read_dir(std::path::Path::new(&dir_s).join("journal"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            u64::from_str_radix(n.strip_suffix(".jnl")?, 16).ok()
        })
        .collect();
    let highest = gens.iter().max().copied().unwrap_or(0);
    assert!(
        highest + 1 > gens.len() as u64,
        "no journal file was ever retired: {gens:?}"
    );
    drop(store);
    eprintln!(
        "{rounds} rounds, {} acknowledged turns checked",
        acked_total.len()
    );
}
