//! Deleting an object: its files go, its name starts fresh, its bucket
//! history stays restorable until purged, and neither a SIGKILL in the
//! middle of a delete nor a power cut after one brings it back.

#[path = "support/child.rs"]
mod child;
#[path = "support/faults.rs"]
mod faults;

use faults::from_earlier_boot;

use std::path::{Path, PathBuf};

use amber::testing::SplitMix;
use amber::{
    BucketConfig, BucketHistory, Config, DurabilityLevel, ErrorKind, RestoreOptions, RestoreTarget,
    Store,
};

fn files_under(p: &Path) -> usize {
    match std::fs::read_dir(p) {
        Ok(rd) => rd
            .flatten()
            .map(|e| {
                if e.file_type().unwrap().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum(),
        Err(_) => 0,
    }
}

fn bucket_dir(data: &Path, store: &Store, name: &str) -> PathBuf {
    let id = store.id_from_name(name).unwrap();
    data.join("bucket").join("objects").join(id.to_hex())
}

fn names(store: &Store) -> Vec<String> {
    store
        .list_objects()
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect()
}

#[test]
fn a_deleted_object_is_gone_locally_restorable_until_purged_and_its_name_starts_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let store = Store::open(Config::new(data).with_durability(DurabilityLevel::Remote)).unwrap();
    let mut o = store.open_object("doomed").unwrap();
    o.put("k", b"old").unwrap();
    o.end_turn().unwrap();
    o.put("k2", b"old2").unwrap();
    let obj_dir = o.dir().to_path_buf();
    let old_epoch = o.epoch();
    o.sync().unwrap().wait().unwrap();
    // Open: refused, untouched.
    let err = store
        .delete_object("doomed", BucketHistory::Keep)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    drop(o);
    let mut keep = store.open_object("keeper").unwrap();
    keep.put("k", b"v").unwrap();
    keep.close().unwrap();

    assert!(store.delete_object("doomed", BucketHistory::Keep).unwrap());
    assert!(!obj_dir.exists(), "the object's directory is removed");
    assert_eq!(names(&store), ["keeper"]);
    assert_eq!(store.count_objects().unwrap(), 1);
    // Deleting again finds nothing; a hostile name is a typed error.
    assert!(!store.delete_object("doomed", BucketHistory::Keep).unwrap());
    assert_eq!(
        store
            .delete_object(&"x".repeat(10_000), BucketHistory::Keep)
            .unwrap_err()
            .kind(),
        ErrorKind::LimitExceeded
    );
    // The history is still in the bucket, and restores the deleted object.
    let bucket = bucket_dir(data, &store, "doomed");
    assert!(files_under(&bucket) > 0);
    let out = dir.path().join("undeleted.db");
    store
        .restore(
            "doomed",
            RestoreTarget::Latest,
            &out,
            RestoreOptions::default(),
        )
        .unwrap();
    assert!(out.exists());

    // The name starts a fresh object, above the deleted one's epochs.
    let mut o = store.open_object("doomed").unwrap();
    assert_eq!(o.get("k").unwrap(), None);
    assert_eq!(o.seq(), 0);
    assert!(o.epoch() > old_epoch, "{} > {old_epoch}", o.epoch());
    o.put("k", b"new").unwrap();
    o.sync().unwrap().wait().unwrap();
    drop(o);
    assert_eq!(names(&store), ["doomed", "keeper"]);
    // It survives a reopen of the store (no leftover delete runs on it).
    drop(store);
    let store = Store::open(Config::new(data).with_durability(DurabilityLevel::Remote)).unwrap();
    let mut o = store.open_object("doomed").unwrap();
    assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"new"[..]));
    drop(o);

    // Deleted with --purge, nothing of it is left in the bucket.
    assert!(store.delete_object("doomed", BucketHistory::Purge).unwrap());
    assert_eq!(files_under(&bucket), 0, "{}", bucket.display());
    assert_eq!(names(&store), ["keeper"]);
    // The other object is untouched.
    let mut keep = store.open_object("keeper").unwrap();
    assert_eq!(keep.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn delete_works_without_a_bucket_and_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || Config::new(dir.path()).with_bucket(BucketConfig::Disabled);
    {
        let store = Store::open(cfg()).unwrap();
        for n in ["a", "b"] {
            let mut o = store.open_object(n).unwrap();
            o.put("k", b"v").unwrap();
            o.close().unwrap();
        }
    }
    let amber = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_amber"))
            .arg("--data")
            .arg(dir.path())
            .args(["--bucket", "none"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = amber(&["delete", "a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = amber(&["delete", "a"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no object named `a`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8(amber(&["objects"]).stdout).unwrap();
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.ends_with("\tb\n"), "{listed}");
    let store = Store::open(cfg()).unwrap();
    let mut o = store.open_object("a").unwrap();
    assert_eq!(o.get("k").unwrap(), None);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn a_power_cut_after_a_delete_does_not_bring_the_object_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = || Config::new(&data).with_bucket(BucketConfig::Disabled);
    let saved = dir.path().join("saved");
    {
        let store = Store::open(cfg()).unwrap();
        let mut o = store.open_object("gone").unwrap();
        o.put("k", b"v").unwrap();
        let obj_dir = o.dir().to_path_buf();
        o.close().unwrap();
        copy_dir(&obj_dir, &saved);
        assert!(store.delete_object("gone", BucketHistory::Keep).unwrap());
        // The cut loses the removal of the files and the unsynced note
        // that it was done, but not the fsynced tombstone; the journal
        // still holds the object's commits.
        copy_dir(&saved, &obj_dir);
    }
    let cat =
        amber::sqlite::Connection::open(&data.join("catalog.db"), "\u{1}none", Vec::new()).unwrap();
    let (st, _) = cat
        .prepare_next("UPDATE tombstones SET local_gone = 0", false)
        .unwrap();
    st.unwrap().run().unwrap();
    assert_eq!(cat.changes(), 1);
    drop(cat);
    let journal: Vec<PathBuf> = std::fs::read_dir(data.join("journal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jnl"))
        .collect();
    assert!(!journal.is_empty());
    for j in &journal {
        from_earlier_boot(j);
    }
    let store = Store::open(cfg()).unwrap();
    assert!(names(&store).is_empty(), "{:?}", names(&store));
    let id = store.id_from_name("gone").unwrap();
    let obj_dir = data
        .join("objects")
        .join(&id.to_hex()[..2])
        .join(id.to_hex());
    assert!(!obj_dir.exists(), "the open finished the delete");
    let mut o = store.open_object("gone").unwrap();
    assert_eq!(o.get("k").unwrap(), None);
    assert!(o.epoch() >= 1);
}

const CHILD: &str = "AMBER_DELETE_CHILD";
const OBJECTS: u64 = 6;

/// Deletes and re-creates objects until killed. Each object holds `gen`
/// (a number no earlier incarnation of any object had) and `v`, its
/// counter; lines report what was acknowledged.
#[test]
fn delete_child_writer() {
    let Some(dir) = child::role(CHILD) else {
        return;
    };
    let round: u64 = std::env::var("AMBER_DELETE_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = SplitMix::new(round);
    let mut next_gen = round * 1_000_000;
    let store = Store::open(Config::new(&dir)).unwrap();
    let num = |b: Option<Vec<u8>>| b.map(|b| u64::from_le_bytes(b.try_into().unwrap()));
    loop {
        let i = rng.below(OBJECTS);
        let name = format!("d{i}");
        let mut o = store.open_object(&name).unwrap();
        let gen = match num(o.get("gen").unwrap()) {
            Some(g) => g,
            None => {
                next_gen += 1;
                o.put("gen", &next_gen.to_le_bytes()).unwrap();
                next_gen
            }
        };
        if rng.chance(300) {
            drop(o);
            assert!(store.delete_object(&name, BucketHistory::Keep).unwrap());
            println!("del {i} {gen}");
        } else {
            let v = num(o.get("v").unwrap()).unwrap_or(0) + 1;
            o.put("v", &v.to_le_bytes()).unwrap();
            o.sync().unwrap().wait().unwrap();
            println!("put {i} {gen} {v}");
            drop(o);
        }
    }
}

#[test]
fn a_kill_in_the_middle_of_deletes_loses_nothing_acknowledged_and_resurrects_nothing() {
    if child::in_child(CHILD) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rng = SplitMix::new(99);
    // Per object, the last acknowledged step: (deleted, gen, v).
    let mut last: Vec<Option<(bool, u64, u64)>> = vec![None; OBJECTS as usize];
    let mut deletes = 0;
    for round in 1..=10u64 {
        let c = child::Command::test("delete_child_writer")
            .env(CHILD, &data)
            .env("AMBER_DELETE_ROUND", round.to_string())
            .spawn();
        std::thread::sleep(std::time::Duration::from_millis(200 + rng.below(500)));
        let out = c.kill_9();
        for l in &out.lines {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["del", i, g] => {
                    last[i.parse::<usize>().unwrap()] = Some((true, g.parse().unwrap(), 0));
                    deletes += 1;
                }
                ["put", i, g, v] => {
                    last[i.parse::<usize>().unwrap()] =
                        Some((false, g.parse().unwrap(), v.parse().unwrap()))
                }
                _ => {}
            }
        }
        let store = Store::open(Config::new(&data)).unwrap();
        let listed = names(&store);
        for (i, last) in last.iter().enumerate() {
            let name = format!("d{i}");
            let id = store.id_from_name(&name).unwrap();
            let obj_dir = data
                .join("objects")
                .join(&id.to_hex()[..2])
                .join(id.to_hex());
            let is_listed = listed.contains(&name);
            // A kill between the row and the database leaves an empty
            // object listed; never an object that the catalog misses.
            assert!(
                is_listed || !obj_dir.join("db").exists(),
                "round {round}: {name}: its database exists but it is not listed"
            );
            let found = if is_listed {
                let mut o = store.open_object(&name).unwrap();
                o.integrity_check().unwrap();
                let num = |b: Option<Vec<u8>>| b.map(|b| u64::from_le_bytes(b.try_into().unwrap()));
                let gen = num(o.get("gen").unwrap());
                let v = num(o.get("v").unwrap()).unwrap_or(0);
                gen.map(|g| (g, v))
            } else {
                None
            };
            match (*last, found) {
                (None, _) => {}
                (Some((true, g, _)), Some((fg, _))) => assert!(
                    fg > g,
                    "round {round}: {name}: deleted generation {g} is back as {fg}"
                ),
                (Some((true, _, _)), None) => {}
                (Some((false, g, v)), Some((fg, fv))) => assert!(
                    fg > g || (fg == g && fv >= v),
                    "round {round}: {name}: acknowledged gen {g} v {v}, found gen {fg} v {fv}"
                ),
                // A delete after the last acknowledged put may have
                // committed before the kill.
                (Some((false, _, _)), None) => {}
            }
        }
        drop(store);
    }
    assert!(deletes > 0, "no delete was acknowledged");
}

#[test]
fn the_runtime_deletes_an_object_by_id_and_the_id_starts_fresh() {
    use amber::runtime::{Request, Runtime};
    use amber::server::classes::counter::Counter;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let rt = Runtime::builder(store)
        .class("counter", Counter::default)
        .start()
        .unwrap();
    let ns = rt.namespace("counter").unwrap();
    let id = ns.id_from_name("room").unwrap();
    let stub = ns.get(&id).unwrap();
    let inc = || {
        let r = stub
            .fetch(Request::new("POST", "/increment"))
            .wait()
            .unwrap();
        assert_eq!(r.status, 200);
        String::from_utf8(r.body).unwrap()
    };
    inc();
    inc();
    assert_eq!(inc().trim(), "3");
    assert!(rt.is_live(&id));
    assert!(rt.delete(&id, BucketHistory::Purge).wait().unwrap());
    assert!(!rt.is_live(&id));
    assert!(rt.store().list_objects().unwrap().is_empty());
    // The same id, a fresh object.
    assert_eq!(inc().trim(), "1");
    assert_eq!(rt.store().count_objects().unwrap(), 1);
    // Deleting one that was never made is not an error.
    let never = ns.id_from_name("never").unwrap();
    assert!(!rt.delete(&never, BucketHistory::Keep).wait().unwrap());
}
