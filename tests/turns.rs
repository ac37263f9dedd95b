//! Turns, explicit transactions, tickets, and the object lifecycle.

#[path = "support/child.rs"]
mod child;
mod common;

use std::sync::mpsc;
use std::time::Duration;

use amber::{Error, ErrorKind, ListOptions, Value};
use common::{block_on, store, store_with};

fn count(o: &mut amber::Object, table: &str) -> i64 {
    o.exec(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .one()
        .unwrap()
        .get(0)
        .unwrap()
        .as_i64()
        .unwrap()
}

#[test]
fn a_turns_sql_and_kv_writes_commit_together_or_not_at_all() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    o.end_turn().unwrap().wait().unwrap();
    // A turn that is never ended is never committed.
    o.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
    o.put("k", b"v").unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(count(&mut o, "t"), 0);
    assert_eq!(o.get("k").unwrap(), None);
    assert_eq!(o.seq(), 1);
    // An ended one is, as one commit with one sequence number.
    o.exec("INSERT INTO t VALUES (1)", &[]).unwrap();
    o.put("k", b"v").unwrap();
    o.set_alarm_ms(42).unwrap();
    let t = o.end_turn().unwrap();
    assert_eq!(t.seq(), 2);
    t.wait().unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(count(&mut o, "t"), 1);
    assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(o.get_alarm_ms().unwrap(), Some(42));
    assert_eq!(o.seq(), 2);
}

#[test]
fn read_only_turns_do_not_consume_sequence_numbers() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put("k", b"v").unwrap();
    assert_eq!(o.end_turn().unwrap().seq(), 1);
    o.get("k").unwrap();
    o.exec("SELECT 1", &[]).unwrap();
    o.list(&ListOptions::default()).unwrap();
    let t = o.end_turn().unwrap();
    assert_eq!(t.seq(), 1);
    assert_eq!(o.seq(), 1);
}

#[test]
fn transaction_rolls_back_only_its_own_level() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    o.put("outer", b"1").unwrap();
    let r: Result<(), Error> = o.transaction(|tx| {
        tx.exec("INSERT INTO t VALUES (1)", &[])?;
        tx.put("inner", b"1")?;
        tx.put("outer", b"changed")?;
        tx.set_alarm_ms(5)?;
        let nested: Result<(), Error> = tx.transaction(|tx2| {
            tx2.put("nested", b"1")?;
            tx2.exec("INSERT INTO t VALUES (2)", &[])?;
            Ok(())
        });
        nested?;
        let failing: Result<(), Error> = tx.transaction(|tx2| {
            tx2.put("doomed", b"1")?;
            tx2.exec("INSERT INTO t VALUES (3)", &[])?;
            Err(Error::new(ErrorKind::InvalidInput, "no"))
        });
        assert!(failing.is_err());
        assert_eq!(tx.get("doomed")?, None);
        assert_eq!(tx.get("nested")?.as_deref(), Some(&b"1"[..]));
        Err(Error::new(
            ErrorKind::InvalidInput,
            "roll back the outer one too",
        ))
    });
    assert_eq!(r.unwrap_err().message(), "roll back the outer one too");
    assert!(!o.is_broken());
    assert_eq!(count(&mut o, "t"), 0);
    assert_eq!(o.get("inner").unwrap(), None);
    assert_eq!(o.get("nested").unwrap(), None);
    assert_eq!(o.get("outer").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(o.get_alarm_ms().unwrap(), None);
    let ok: Result<i32, Error> = o.transaction(|tx| {
        tx.put("kept", b"1")?;
        tx.exec("INSERT INTO t VALUES (9)", &[])?;
        Ok(7)
    });
    assert_eq!(ok.unwrap(), 7);
    o.end_turn().unwrap().wait().unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(count(&mut o, "t"), 1);
    assert_eq!(o.get("kept").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(o.get("outer").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_panic_inside_a_transaction_rolls_it_back() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _: Result<(), Error> = o.transaction(|tx| {
            tx.put("p", b"1")?;
            panic!("boom");
        });
    }));
    assert!(r.is_err());
    assert_eq!(o.get("p").unwrap(), None);
    o.put("q", b"1").unwrap();
    o.end_turn().unwrap().wait().unwrap();
}

#[test]
fn end_turn_inside_a_transaction_is_refused() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let r: Result<(), Error> = o.transaction(|tx| {
        tx.put("x", b"1")?;
        tx.end_turn().map(|_| ())
    });
    assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn tickets_resolve_blocking_as_futures_and_by_callback() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put("k", b"1").unwrap();
    let t = o.end_turn().unwrap();
    let (tx, rx) = mpsc::channel();
    t.on_complete(move |r| tx.send(r.map_err(|e| e.kind())).unwrap());
    assert_eq!(block_on(t.clone()).unwrap(), 1);
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Ok(1));
    assert_eq!(t.wait_timeout(Duration::from_secs(10)).unwrap(), 1);
    assert!(t.is_done());
    // A ticket for nothing is already done.
    let mut o2 = s.open_object("b").unwrap();
    assert_eq!(o2.end_turn().unwrap().poll_done().unwrap().unwrap(), 0);
}

#[test]
fn many_objects_commit_concurrently() {
    let (_d, s) = store();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut o = s.open_object(&format!("obj-{i}")).unwrap();
                let mut last = None;
                for j in 0..50 {
                    o.put(&format!("k{j}"), b"v").unwrap();
                    last = Some(o.end_turn().unwrap());
                }
                last.unwrap().wait().unwrap()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 50);
    }
    assert_eq!(s.list_objects().unwrap().len(), 8);
}

#[test]
fn a_failed_commit_breaks_the_object_until_reopened() {
    let (_d, s) = store_with(|c| c.limits.max_object_bytes = 128 * 1024);
    let mut o = s.open_object("a").unwrap();
    o.put("safe", b"1").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    // KV writes are coalesced until the end of the turn, so the size limit
    // is hit by the commit itself.
    let v = vec![1u8; 100 * 1024];
    for i in 0..4 {
        o.put(&format!("big{i}"), &v).unwrap();
    }
    let err = o.end_turn().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Broken, "{err}");
    assert!(o.is_broken());
    assert_eq!(o.get("safe").unwrap_err().kind(), ErrorKind::Broken);
    assert_eq!(
        o.exec("SELECT 1", &[]).err().unwrap().kind(),
        ErrorKind::Broken
    );
    assert_eq!(o.end_turn().unwrap_err().kind(), ErrorKind::Broken);
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(o.get("safe").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(o.get("big0").unwrap(), None);
}

#[test]
fn one_handle_per_object_per_process() {
    let (_d, s) = store();
    let o = s.open_object("a").unwrap();
    assert_eq!(s.open_object("a").err().unwrap().kind(), ErrorKind::Locked);
    drop(o);
    s.open_object("a").unwrap();
}

/// Runs as a child process when AMBER_LOCK_CHILD is set: tries to open an
/// object another process holds.
#[test]
fn child_open_locked_object() {
    let Some(dir) = child::role("AMBER_LOCK_CHILD") else {
        return;
    };
    let s = amber::Store::open(amber::Config::new(dir)).unwrap();
    match s.open_object("held") {
        Err(e) if e.kind() == ErrorKind::Locked => std::process::exit(42),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_second_process_gets_locked_not_corruption() {
    let (d, s) = store();
    let mut o = s.open_object("held").unwrap();
    o.put("k", b"v").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let out = child::Command::test("child_open_locked_object")
        .env("AMBER_LOCK_CHILD", d.path())
        .run();
    assert_eq!(out.status.code(), Some(42), "{}", out.stderr.join("\n"));
    assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn hostile_names_stay_inside_the_store() {
    let (d, s) = store();
    let names = [
        "../x",
        "/etc/passwd",
        "a\0b",
        "..",
        ".",
        "a/../../b",
        "\\\\server\\share",
        "😀",
        "CON",
        &"n".repeat(1024),
    ];
    for n in names {
        let mut o = s.open_object(n).unwrap();
        o.put("k", n.as_bytes()).unwrap();
        o.end_turn().unwrap().wait().unwrap();
        assert!(o.dir().starts_with(d.path()), "{n}");
    }
    assert_eq!(
        s.open_object("").err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        s.open_object(&"n".repeat(1025)).err().unwrap().kind(),
        ErrorKind::LimitExceeded
    );
    let listed = s.list_objects().unwrap();
    assert_eq!(listed.len(), names.len());
    for n in names {
        assert!(listed.iter().any(|o| o.name == n), "{n} listed");
        assert_eq!(
            s.id_from_name(n).unwrap(),
            listed.iter().find(|o| o.name == n).unwrap().id
        );
    }
    assert!(!std::path::Path::new("/etc/passwd.db").exists());
}

#[test]
fn commit_times_are_monotonic_even_if_the_clock_goes_back() {
    let clock = std::sync::Arc::new(amber::ManualClock::new(10_000));
    let c2 = clock.clone();
    let (_d, s) = store_with(move |c| c.clock = c2);
    let mut o = s.open_object("a").unwrap();
    o.put("k", b"1").unwrap();
    o.end_turn().unwrap();
    assert_eq!(o.last_commit_ms(), 10_000);
    clock.set(5_000);
    o.put("k", b"2").unwrap();
    o.end_turn().unwrap();
    assert_eq!(o.last_commit_ms(), 10_000);
    clock.set(20_000);
    o.put("k", b"3").unwrap();
    o.end_turn().unwrap();
    assert_eq!(o.last_commit_ms(), 20_000);
}

#[test]
fn alarms_are_stored_with_the_turn() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    assert_eq!(o.get_alarm().unwrap(), None);
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
    o.set_alarm(at).unwrap();
    assert_eq!(o.get_alarm().unwrap(), Some(at));
    o.set_named_alarm_ms("cleanup", 9).unwrap();
    o.end_turn().unwrap().wait().unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(o.get_alarm().unwrap(), Some(at));
    assert_eq!(o.get_named_alarm_ms("cleanup").unwrap(), Some(9));
    o.delete_alarm().unwrap();
    assert_eq!(o.get_alarm().unwrap(), None);
    assert_eq!(
        o.set_named_alarm_ms(&"n".repeat(300), 1)
            .unwrap_err()
            .kind(),
        ErrorKind::LimitExceeded
    );
    let v = o.exec("SELECT 1", &[]).unwrap().one().unwrap();
    assert_eq!(v.get(0), Some(&Value::Integer(1)));
}

#[test]
fn checkpoints_keep_the_wal_bounded() {
    let (_d, s) = store_with(|c| c.tuning.checkpoint_pages = 50);
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x BLOB)", &[]).unwrap();
    for _ in 0..100 {
        o.exec("INSERT INTO t VALUES (randomblob(3000))", &[])
            .unwrap();
        o.end_turn().unwrap();
    }
    o.sync().unwrap().wait().unwrap();
    let wal = std::fs::metadata(o.dir().join("db-wal")).unwrap().len();
    assert!(wal < 200 * 4096 * 2, "wal is {wal} bytes");
    o.integrity_check().unwrap();
}

/// Group commit across objects: eight objects committing at once, each
/// waiting for its commit to be durable, share the journal's fdatasyncs.
/// Counted by the journal, not timed.
#[test]
fn concurrent_objects_share_the_journals_fsyncs() {
    let (_d, s) = store_with(|c| c.bucket = amber::BucketConfig::Disabled);
    let before = s.journal_stats();
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut o = s.open_object(&format!("w{w}")).unwrap();
                for i in 0..40u32 {
                    o.put("n", &i.to_le_bytes()).unwrap();
                    o.end_turn()
                        .unwrap()
                        .wait_timeout(Duration::from_secs(30))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let after = s.journal_stats();
    let commits = after.commits - before.commits;
    let fsyncs = after.fsyncs - before.fsyncs;
    assert!(commits >= 8 * 40, "{commits} commits");
    assert!(
        fsyncs * 2 <= commits,
        "{fsyncs} journal fsyncs for {commits} commits: not shared"
    );
}
