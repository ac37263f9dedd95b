//! A real full disk: the store lives on a small tmpfs that the test mounts
//! (root only), a filler file takes part of it, and one object is written
//! until the disk is full. Then:
//! - the write that met the full disk fails with `StorageFull`, and its
//!   message names the disk, not the object's size limit;
//! - every acknowledged write is still there, read through the API on the
//!   full disk, and through the CLI;
//! - once the filler is deleted, the same process (no restart, the same
//!   `Store`) writes again, and a reopen of the store has everything.
//!
//! Skipped with a message where the test cannot mount (not root, or no
//! tmpfs); `AMBER_REQUIRE_FULL_DISK=1` (set by `.ci/run` when it runs as
//! root) turns the skip into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use amber::{BucketConfig, Config, ErrorKind, Store};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            Some(Tmpfs { dir })
        } else {
            None
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn mounted_or_skip(mib: u64) -> Option<Tmpfs> {
    if let Some(fs) = Tmpfs::mount(mib) {
        return Some(fs);
    }
    assert!(
        std::env::var("AMBER_REQUIRE_FULL_DISK").as_deref() != Ok("1"),
        "AMBER_REQUIRE_FULL_DISK=1 but a tmpfs could not be mounted"
    );
    eprintln!("skipped: mounting a tmpfs needs root (set AMBER_REQUIRE_FULL_DISK=1 to require it)");
    None
}

fn config(data: &Path, bucket: bool) -> Config {
    let mut c = Config::new(data);
    if !bucket {
        c = c.with_bucket(BucketConfig::Disabled);
    }
    // Small journal files, as a small disk would want.
    c.journal = amber::JournalOptions::default().with_file_bytes(1 << 20);
    c
}

fn blob(i: u32) -> Vec<u8> {
    // Incompressible, so the journal's zstd cannot shrink it away.
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn amber_cli(data: &Path, bucket: bool, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_amber"));
    cmd.arg("--data").arg(data);
    if !bucket {
        cmd.args(["--bucket", "none"]);
    }
    let out = cmd.args(args).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn a_full_disk_fails_writes_with_storage_full_keeps_reads_and_recovers_in_process() {
    full_disk(false);
}

/// The same with the embedded default bucket (`file://<data>/bucket`) on
/// the same disk, so shipping meets the full disk too.
#[test]
fn a_full_disk_under_the_default_bucket_loses_nothing_and_recovers_in_process() {
    full_disk(true);
}

fn full_disk(bucket: bool) {
    let Some(fs) = mounted_or_skip(24) else {
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![7u8; 6 << 20]).unwrap();
    let store = Store::open(config(&data, bucket)).unwrap();
    let mut o = store.open_object("room").unwrap();
    let mut acked = 0u32;
    let full = loop {
        assert!(acked < 1000, "24 MiB never filled up");
        let r = o
            .put(&format!("k{acked}"), &blob(acked))
            .and_then(|()| o.end_turn())
            .and_then(|t| t.wait_timeout(Duration::from_secs(30)));
        match r {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
    };
    eprintln!("{acked} writes acknowledged, then: {full}");
    assert!(
        acked >= 10,
        "only {acked} writes fitted before the disk filled"
    );
    assert_eq!(full.kind(), ErrorKind::StorageFull, "{full}");
    assert!(
        full.message().contains("disk") && !full.message().contains("max_object_bytes"),
        "the message should name the full disk: {full}"
    );
    // The handle that met the full disk is broken; a reopen reads
    // everything acknowledged, on the still-full disk.
    let e = o
        .put("after", b"x")
        .and_then(|()| o.end_turn())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Broken, "{e}");
    drop(o);
    let mut o = store.open_object("room").unwrap();
    for i in 0..acked {
        assert_eq!(
            o.get(&format!("k{i}")).unwrap().as_deref(),
            Some(&blob(i)[..]),
            "acknowledged write k{i} lost"
        );
    }
    drop(o);

    // The CLI reads too, while the disk is full and the store is open here.
    let (ok, out) = amber_cli(&data, bucket, &["objects"]);
    assert!(ok && out.contains("room"), "amber objects: {out}");
    let (ok, out) = amber_cli(&data, bucket, &["kv", "get", "room", "k0", "--hex"]);
    assert!(ok, "amber kv get on a full disk: {out}");

    // Space comes back: the same store writes again, no restart.
    std::fs::remove_file(&filler).unwrap();
    let mut o = store.open_object("room").unwrap();
    o.put("after", b"space came back").unwrap();
    o.end_turn()
        .unwrap()
        .wait_timeout(Duration::from_secs(30))
        .unwrap();
    drop(o);
    drop(store);
    let store = Store::open(config(&data, bucket)).unwrap();
    let mut o = store.open_object("room").unwrap();
    assert_eq!(
        o.get("after").unwrap().as_deref(),
        Some(&b"space came back"[..])
    );
    for i in 0..acked {
        assert!(o.get(&format!("k{i}")).unwrap().is_some(), "k{i} lost");
    }
    if bucket {
        // Shipping resumed once space came back: the bucket gets every
        // commit, up to the last, and its log verifies.
        let last = o.seq();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let h = store.history("room").unwrap();
            if h.latest().is_some_and(|b| b.seq() >= last) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the bucket never caught up to commit {last}: {:?}",
                h.latest()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let report = store.verify("room").unwrap();
        assert!(report.is_ok(), "{report:?}");
    }
    let ok = o
        .exec("PRAGMA integrity_check", &[])
        .unwrap()
        .one()
        .unwrap()
        .get(0)
        .unwrap()
        .as_str()
        .map(str::to_owned);
    assert_eq!(ok.as_deref(), Some("ok"));
}
