//! What one object costs: fsyncs to create it, counted with strace on
//! the CLI (no timers).
//!
//! The count is a difference of two runs of the same command on the same
//! store: a write that creates its object, and a write to an object that
//! exists. Store open, the commit and the close cost the same in both (a
//! clean close checkpoints and deletes the WAL, so the existing object
//! opens with no WAL and skips the open-time WAL fsync of
//! `object/open.rs`), so the creation alone is the difference, and its
//! total adds the journal fsync its first commit shares.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// fsync-family calls made by `amber --data DIR --bucket none ARGS`, or
/// `None` when strace is not installed.
fn fsyncs(data: &Path, args: &[&str]) -> Option<usize> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let trace = data.with_extension(format!("trace{}", RUNS.fetch_add(1, Ordering::Relaxed)));
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,syncfs,sync",
        ])
        .arg("-o")
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(data)
        .args(["--bucket", "none"])
        .args(args)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("run strace: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("strace: ") && stderr.contains("ptrace") {
        eprintln!("skipped: strace cannot trace here: {stderr}");
        return None;
    }
    assert!(out.status.success(), "amber {args:?}: {stderr}");
    let log = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    Some(
        log.lines()
            .filter(|l| !l.contains("resumed>") && l.contains("sync"))
            .count(),
    )
}

#[test]
fn creating_an_object_costs_at_most_three_fsyncs_with_its_first_commit() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // A store, with one object and every shard directory made, so that
    // neither run pays for them.
    let status = Command::new(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(&data)
        .args(["--bucket", "none", "kv", "put", "old", "k", "v"])
        .status()
        .unwrap();
    assert!(status.success());
    for i in 0..=255u32 {
        std::fs::create_dir_all(data.join("objects").join(format!("{i:02x}"))).unwrap();
    }
    let Some(existing) = fsyncs(&data, &["kv", "put", "old", "k", "v2"]) else {
        eprintln!("skipped: strace is not installed or cannot trace (.ci/run installs it)");
        return;
    };
    let created = fsyncs(&data, &["kv", "put", "new", "k", "v"]).unwrap();
    let again = fsyncs(&data, &["kv", "put", "old", "k", "v3"]).unwrap();
    eprintln!(
        "fsyncs: write to an existing object {existing} and {again}, creating write {created}"
    );
    // The baseline must be steady, or the difference means nothing.
    assert_eq!(existing, again, "the same write cost different fsyncs");
    let creation = created.saturating_sub(existing);
    assert!(
        creation <= 2,
        "creating an object cost {creation} fsyncs beyond its first commit's one \
         ({created} against {existing})"
    );
    // And the object is really there, under its name.
    let out = Command::new(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(&data)
        .args(["--bucket", "none", "kv", "get", "new", "k"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
}

/// Descriptors this process holds on files under `dir` (the other test
/// of this binary opens its own meanwhile).
fn open_fds(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.starts_with(dir)))
        .count()
}

/// Counts, not times: the files and bytes an object keeps at rest, and
/// the descriptors it holds while open and after it closes.
#[test]
fn an_object_keeps_one_file_at_rest_and_two_descriptors_while_open() {
    use amber::{BucketConfig, Config, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path()).with_bucket(BucketConfig::Disabled)).unwrap();
    // Warm the store's own descriptors (journal file, catalog).
    let mut w = store.open_object("warm").unwrap();
    w.put("k", b"v").unwrap();
    w.close().unwrap();
    let before = open_fds(dir.path());
    let mut objs = Vec::new();
    for i in 0..20 {
        let mut o = store.open_object(&format!("o{i}")).unwrap();
        o.put("k", b"v").unwrap();
        o.end_turn().unwrap().wait().unwrap();
        objs.push(o);
    }
    let with_open = open_fds(dir.path());
    let dirs: Vec<_> = objs.iter().map(|o| o.dir().to_path_buf()).collect();
    for o in objs {
        o.close().unwrap();
    }
    // The journal may have opened a new file meanwhile: count what the
    // closes gave back.
    let after = open_fds(dir.path());
    assert!(
        after <= before + 2,
        "{before} descriptors before, {after} after"
    );
    let per_open = (with_open - after) as f64 / 20.0;
    // The database and its WAL; the object lock is a range of the
    // store's `locks` file, and the WAL tap reads through SQLite's handle.
    assert!(per_open <= 2.0, "{per_open} descriptors per open object");
    // A clean close checkpoints and deletes the WAL: the database alone,
    // a few pages for a tiny object.
    for d in &dirs {
        let files: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, ["db"], "{}", d.display());
        let bytes = std::fs::metadata(d.join("db")).unwrap().len();
        assert!(
            bytes <= 24 << 10,
            "{bytes} bytes at rest in {}",
            d.display()
        );
    }
    // And each reopens with its commit.
    for i in 0..20 {
        let mut o = store.open_object(&format!("o{i}")).unwrap();
        assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
