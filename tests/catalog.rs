//! The store catalog: listing page by page, building it for a store made
//! before it, and its promise about alarms (never later than an object's
//! earliest) across SIGKILLs at any moment.

#[path = "support/child.rs"]
mod child;

use std::path::Path;
use std::process::Command;

use amber::sqlite::Connection;
use amber::testing::SplitMix;
use amber::{Config, ErrorKind, ObjectListOptions, Store};

fn config(dir: &Path) -> Config {
    Config::new(dir).with_bucket(amber::BucketConfig::Disabled)
}

fn names(page: Vec<amber::ObjectInfo>) -> Vec<String> {
    page.into_iter().map(|o| o.name).collect()
}

/// The catalog's rows as (name, alarm_ms), read straight from its file.
fn catalog_rows(data: &Path) -> Vec<(String, Option<i64>)> {
    let conn = Connection::open(&data.join("catalog.db"), "\u{1}none", Vec::new()).unwrap();
    let (st, _) = conn
        .prepare_next("SELECT name, alarm_ms FROM objects ORDER BY name", false)
        .unwrap();
    let mut st = st.unwrap();
    let mut out = Vec::new();
    while st.step().unwrap() {
        let name = String::from_utf8(st.column_bytes(0)).unwrap();
        let alarm = (!st.column_is_null(1)).then(|| st.column_i64(1));
        out.push((name, alarm));
    }
    out
}

#[test]
fn objects_list_page_by_page_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path())).unwrap();
    let mut made = Vec::new();
    for i in 0..130 {
        made.push(format!("room-{i:03}"));
    }
    for i in 0..20 {
        made.push(format!("user-{i:02}"));
    }
    made.push("roomy".into());
    for name in &made {
        let mut o = store.open_object(name).unwrap();
        o.put("k", b"v").unwrap();
        o.close().unwrap();
    }
    made.sort();
    assert_eq!(names(store.list_objects().unwrap()), made);
    assert_eq!(store.count_objects().unwrap(), made.len() as u64);

    // Pages of 50 under a prefix, each after the last name of the one before.
    let mut opts = ObjectListOptions::new().prefix("room-").limit(50);
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list_objects_page(&opts).unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 50);
        opts = opts.start_after(last.name.clone());
        got.extend(names(page));
        pages += 1;
    }
    assert_eq!(pages, 3);
    let rooms: Vec<String> = made
        .iter()
        .filter(|n| n.starts_with("room-"))
        .cloned()
        .collect();
    assert_eq!(got, rooms);
    // Ids come with the names.
    let first = &store
        .list_objects_page(&ObjectListOptions::new().limit(1))
        .unwrap()[0];
    assert_eq!(first.id, store.id_from_name(&first.name).unwrap());
    // A zero limit is a typed error; an empty prefix page is empty.
    let err = store
        .list_objects_page(&ObjectListOptions::new().limit(0))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(store
        .list_objects_page(&ObjectListOptions::new().prefix("zzz"))
        .unwrap()
        .is_empty());
    drop(store);

    // The CLI streams the same, with --prefix, --after and --limit.
    let out = Command::new(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(dir.path())
        .args(["--bucket", "none", "objects", "--prefix", "room"])
        .args(["--after", "room-120", "--limit", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').unwrap().1.to_string())
        .collect();
    assert_eq!(
        listed,
        ["room-121", "room-122", "room-123", "room-124", "room-125"]
    );
}

#[test]
fn a_store_made_before_the_catalog_builds_it_from_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path())).unwrap();
        for i in 0..12 {
            let mut o = store.open_object(&format!("old-{i}")).unwrap();
            o.put("k", b"v").unwrap();
            if i % 3 == 0 {
                o.set_alarm_ms(1_000 + i).unwrap();
            }
            let d = o.dir().to_path_buf();
            o.close().unwrap();
            // Round-1 objects kept their name in a file; some still do.
            if i % 2 == 0 {
                std::fs::write(d.join("name"), format!("old-{i}")).unwrap();
            }
        }
        // A directory that never got a database is not an object.
        std::fs::create_dir_all(dir.path().join("objects/ab").join("ab".repeat(32))).unwrap();
    }
    for f in ["catalog.db", "catalog.db-wal", "catalog.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let store = Store::open(config(dir.path())).unwrap();
    let mut want: Vec<String> = (0..12).map(|i| format!("old-{i}")).collect();
    want.sort();
    assert_eq!(names(store.list_objects().unwrap()), want);
    drop(store);
    // Alarms are not known until each object opens once (0 = unknown).
    let rows = catalog_rows(dir.path());
    assert!(rows.iter().all(|(_, a)| *a == Some(0)), "{rows:?}");
    let store = Store::open(config(dir.path())).unwrap();
    for i in 0..12u64 {
        store
            .open_object(&format!("old-{i}"))
            .unwrap()
            .close()
            .unwrap();
    }
    drop(store);
    for (name, alarm) in catalog_rows(dir.path()) {
        let i: i64 = name.trim_start_matches("old-").parse().unwrap();
        let want = (i % 3 == 0).then_some(1_000 + i);
        assert_eq!(alarm, want, "{name}");
    }
}

/// The child's role variable: the data directory.
const CHILD: &str = "AMBER_CATALOG_CHILD";
const OBJECTS: u64 = 24;

/// Turns that create objects and set, move and delete their alarms,
/// until killed. Runs only in the child.
#[test]
fn catalog_child_writer() {
    let Some(dir) = child::role(CHILD) else {
        return;
    };
    let seed: u64 = std::env::var("AMBER_CATALOG_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let mut rng = SplitMix::new(seed);
    let store = Store::open(Config::new(&dir).with_bucket(amber::BucketConfig::Disabled)).unwrap();
    loop {
        let i = rng.below(OBJECTS);
        let mut o = store.open_object(&format!("a{i}")).unwrap();
        for _ in 0..1 + rng.below(3) {
            let name = format!("n{}", rng.below(3));
            match rng.below(4) {
                0 => o.delete_named_alarm(&name).unwrap(),
                _ => o
                    .set_named_alarm_ms(&name, 1_000 + rng.below(1_000_000))
                    .unwrap(),
            }
        }
        o.put("k", &rng.next_u64().to_le_bytes()).unwrap();
        if rng.chance(300) {
            o.end_turn().unwrap().wait().unwrap();
        } else {
            o.end_turn().unwrap();
        }
        if rng.chance(500) {
            drop(o);
        } else {
            std::mem::forget(o);
        }
    }
}

#[test]
fn a_kill_at_any_moment_leaves_no_alarm_the_catalog_would_miss() {
    if child::in_child(CHILD) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut rng = SplitMix::new(7);
    for round in 0..12u64 {
        let c = child::Command::test("catalog_child_writer")
            .env(CHILD, &data)
            .env("AMBER_CATALOG_SEED", round.to_string())
            .spawn();
        std::thread::sleep(std::time::Duration::from_millis(150 + rng.below(400)));
        let out = c.kill_9();
        assert!(
            !out.status.success(),
            "round {round}: the child ended by itself: {:?}",
            out.stderr
        );
        // Every object that exists has a row, and the row's alarm is no
        // later than the object's earliest: a start that reads the catalog
        // opens every object with an alarm due.
        let store = Store::open(config(&data)).unwrap();
        let rows = catalog_rows(&data);
        for i in 0..OBJECTS {
            let name = format!("a{i}");
            let dir = store.id_from_name(&name).unwrap();
            let obj_dir = data
                .join("objects")
                .join(&dir.to_hex()[..2])
                .join(dir.to_hex());
            if !obj_dir.join("db").exists() {
                continue;
            }
            let row = rows.iter().find(|(n, _)| *n == name);
            let mut o = store.open_object(&name).unwrap();
            let earliest = o.list_alarms().unwrap().iter().map(|a| a.1).min();
            let Some((_, cat)) = row else {
                panic!("round {round}: {name} exists but the catalog lacks it");
            };
            match (earliest, cat) {
                (None, _) => {}
                (Some(_), None) => {
                    panic!("round {round}: {name} has alarms the catalog does not know")
                }
                (Some(e), Some(c)) => assert!(
                    *c as u64 <= e,
                    "round {round}: {name}: the catalog says {c}, the object {e}"
                ),
            }
            drop(o);
        }
        drop(store);
    }
}

#[test]
fn a_namespace_lists_its_ids_page_by_page() {
    use amber::runtime::{Request, Runtime};
    use amber::server::classes::counter::Counter;
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder(Store::open(config(dir.path())).unwrap())
        .class("room", Counter::default)
        .class("roomy", Counter::default)
        .start()
        .unwrap();
    let touch = |ns: &str, id: &amber::runtime::Id| {
        let ns = rt.namespace(ns).unwrap();
        let r = ns
            .get(id)
            .unwrap()
            .fetch(Request::new("POST", "/increment"))
            .wait()
            .unwrap();
        assert_eq!(r.status, 200);
    };
    let rooms = rt.namespace("room").unwrap();
    let mut want = Vec::new();
    for i in 0..5 {
        let id = rooms.id_from_name(&format!("r{i}")).unwrap();
        touch("room", &id);
        want.push(id.to_string());
    }
    for _ in 0..2 {
        let id = rooms.new_unique_id().unwrap();
        touch("room", &id);
        want.push(id.to_string());
    }
    let other = rt.namespace("roomy").unwrap();
    for i in 0..3 {
        touch("roomy", &other.id_from_name(&format!("x{i}")).unwrap());
    }
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let page = rooms.list_ids(after.as_ref(), 3).unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last().cloned() else {
            break;
        };
        got.extend(page.iter().map(|i| i.to_string()));
        after = Some(last);
    }
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(other.list_ids(None, 100).unwrap().len(), 3);
    assert_eq!(
        rooms.list_ids(None, 0).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}
