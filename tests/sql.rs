//! The SQL API, its restrictions and its limits.

mod common;

use amber::{ErrorKind, Value, ValueRef};
use common::{store, store_with};

#[test]
fn exec_runs_several_statements_and_returns_the_last_ones_rows() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let c = o
        .exec(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB);
             INSERT INTO t (name, score, data) VALUES (?1, ?2, ?3), ('b', NULL, NULL);
             SELECT id, name, score, data FROM t ORDER BY id; -- trailing comment",
            &["a".into(), 1.5.into(), ValueRef::Blob(&[1, 2])],
        )
        .unwrap();
    assert_eq!(c.columns(), ["id", "name", "score", "data"]);
    let rows = c.to_vec().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].values(),
        &[
            Value::Integer(1),
            Value::Text("a".into()),
            Value::Real(1.5),
            Value::Blob(vec![1, 2])
        ]
    );
    assert_eq!(rows[1].get_by_name("score"), Some(&Value::Null));
}

#[test]
fn writes_happen_even_if_the_cursor_is_never_read() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    let _ = o
        .exec("INSERT INTO t VALUES (1), (2) RETURNING x", &[])
        .unwrap();
    let c = o.exec("SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(c.one().unwrap().get(0), Some(&Value::Integer(2)));
}

#[test]
fn reading_a_cursor_never_runs_its_statement_twice() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    assert!(o
        .exec("INSERT INTO t VALUES (1)", &[])
        .unwrap()
        .to_vec()
        .unwrap()
        .is_empty());
    let none = o
        .exec("INSERT INTO t SELECT 5 WHERE 0 RETURNING x", &[])
        .unwrap();
    assert!(none.to_vec().unwrap().is_empty());
    let c = o.exec("SELECT count(*) FROM t", &[]).unwrap();
    assert_eq!(c.one().unwrap().get(0), Some(&Value::Integer(1)));
}

#[test]
fn cursor_counts_rows_read_and_written() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    let c = o.exec("INSERT INTO t VALUES (1), (2), (3)", &[]).unwrap();
    assert_eq!(c.rows_written(), 3);
    drop(c);
    let c = o.exec("UPDATE t SET x = x + 1 WHERE x > 1", &[]).unwrap();
    assert_eq!(c.rows_written(), 2);
    drop(c);
    let mut c = o.exec("SELECT x FROM t", &[]).unwrap();
    while c.next_row().unwrap().is_some() {}
    assert!(c.rows_read() >= 3, "rows_read = {}", c.rows_read());
    assert_eq!(c.rows_written(), 0);
}

#[test]
fn one_insists_on_exactly_one_row() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    assert_eq!(
        o.exec("SELECT 1 WHERE 0", &[])
            .unwrap()
            .one()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        o.exec("SELECT 1 UNION ALL SELECT 2", &[])
            .unwrap()
            .one()
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
    assert!(o
        .exec("  -- nothing\n", &[])
        .unwrap()
        .to_vec()
        .unwrap()
        .is_empty());
}

#[test]
fn parameter_count_mismatches_are_input_errors() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    assert_eq!(
        o.exec("SELECT ?1, ?2", &[1.into()]).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        o.exec("SELECT 1", &[1.into()]).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        o.exec("SELEC 1", &[]).err().unwrap().kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn database_size_counts_live_pages_and_shrinks_after_deletes() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let empty = o.database_size().unwrap();
    o.exec("CREATE TABLE t (x BLOB)", &[]).unwrap();
    for _ in 0..200 {
        o.exec("INSERT INTO t VALUES (randomblob(4000))", &[])
            .unwrap();
    }
    o.end_turn().unwrap().wait().unwrap();
    let full = o.database_size().unwrap();
    assert!(full > empty + 700_000, "{empty} -> {full}");
    o.exec("DELETE FROM t", &[]).unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let after = o.database_size().unwrap();
    assert!(after < full / 4, "{full} -> {after}");
    // The file itself shrinks once a checkpoint copies the vacuumed pages back.
    o.sync().unwrap().wait().unwrap();
    drop(o);
    let o = s.open_object("a").unwrap();
    let file = std::fs::metadata(o.dir().join("db")).unwrap().len();
    assert!(
        file < full / 2,
        "file is {file} bytes after deleting {full}"
    );
}

#[test]
fn hostile_sql_is_refused_with_advice() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    let cases: &[(&str, &str)] = &[
        ("BEGIN", "transaction"),
        ("BEGIN IMMEDIATE", "transaction"),
        ("COMMIT", "transaction"),
        ("ROLLBACK", "transaction"),
        ("SAVEPOINT s", "transaction"),
        ("RELEASE s", "transaction"),
        ("ATTACH 'other.db' AS o", "ATTACH"),
        ("ATTACH ':memory:' AS m", "ATTACH"),
        ("DETACH main", "ATTACH"),
        ("CREATE TEMP TABLE x (a)", "TEMP"),
        ("CREATE TEMPORARY VIEW v AS SELECT 1", "TEMP"),
        ("SELECT * FROM temp.sqlite_master", "TEMP"),
        ("SELECT load_extension('/tmp/evil.so')", "load_extension"),
        ("SELECT * FROM _amber_kv", "reserved"),
        ("SELECT * FROM _AMBER_KV", "reserved"),
        (
            "INSERT INTO _amber_meta VALUES (2, 1, 'x', 0, 0, 0)",
            "reserved",
        ),
        ("UPDATE _amber_alarms SET time_ms = 0", "reserved"),
        ("DROP TABLE _amber_kv", "reserved"),
        ("CREATE TABLE _amber_mine (x)", "reserved"),
        ("CREATE INDEX i ON _amber_kv(value)", "reserved"),
        (
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM _amber_kv; END",
            "reserved",
        ),
        ("CREATE VIEW peek AS SELECT * FROM _Amber_kv", "reserved"),
        ("ALTER TABLE _amber_kv RENAME TO stolen", "reserved"),
        ("PRAGMA table_info(_amber_kv)", "reserved"),
        ("PRAGMA journal_mode = DELETE", "PRAGMA"),
        ("PRAGMA writable_schema = ON", "PRAGMA"),
        ("PRAGMA synchronous = OFF", "PRAGMA"),
        ("VACUUM", "VACUUM"),
        ("VACUUM INTO '/tmp/amber-escape.db'", "VACUUM"),
        ("/* hi */ vacuum", "VACUUM"),
        (
            "CREATE VIRTUAL TABLE v USING rtree(id, a, b)",
            "virtual table",
        ),
    ];
    for (sql, hint) in cases {
        let err = o
            .exec(sql, &[])
            .err()
            .unwrap_or_else(|| panic!("{sql} was allowed"));
        assert_eq!(err.kind(), ErrorKind::NotAllowed, "{sql}: {err}");
        assert!(
            err.message().to_lowercase().contains(&hint.to_lowercase()),
            "{sql}: message `{}` lacks `{hint}`",
            err.message()
        );
    }
    assert!(!std::path::Path::new("/tmp/amber-escape.db").exists());
    // Refusals do not break the object.
    o.put("k", b"v").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    for ok in [
        "PRAGMA table_info(t)",
        "PRAGMA foreign_keys",
        "PRAGMA quick_check",
        "PRAGMA optimize",
        "SELECT * FROM sqlite_schema",
    ] {
        o.exec(ok, &[])
            .unwrap_or_else(|e| panic!("{ok}: {e}"))
            .to_vec()
            .unwrap();
    }
}

#[test]
fn limits_are_enforced_and_configurable() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let long = format!("SELECT '{}'", "x".repeat(100_001));
    assert_eq!(
        o.exec(&long, &[]).err().unwrap().kind(),
        ErrorKind::LimitExceeded
    );
    let cols: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let e = o
        .exec(&format!("CREATE TABLE wide ({})", cols.join(", ")), &[])
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let params: Vec<ValueRef> = (0..101).map(ValueRef::Integer).collect();
    let qs: Vec<String> = (1..=101).map(|i| format!("?{i}")).collect();
    assert!(o
        .exec(&format!("SELECT {}", qs.join(", ")), &params)
        .is_err());
    let pat = "%".repeat(51);
    assert!(o
        .exec("SELECT 'a' LIKE ?1", &[ValueRef::Text(&pat)])
        .is_err());
    assert!(o
        .exec("SELECT 'a' LIKE ?1", &[ValueRef::Text(&"%".repeat(50))])
        .is_ok());
    let big = vec![0u8; 2_000_001];
    o.exec("CREATE TABLE b (x)", &[]).unwrap();
    let e = o
        .exec("INSERT INTO b VALUES (?1)", &[ValueRef::Blob(&big)])
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
    // The object survives all of that.
    o.exec("INSERT INTO b VALUES (1)", &[]).unwrap();
    o.end_turn().unwrap().wait().unwrap();

    let (_d2, s2) = store_with(|c| c.limits.max_columns = 10);
    let mut o = s2.open_object("a").unwrap();
    let cols = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    assert!(o
        .exec(&format!("CREATE TABLE t ({})", cols(11)), &[])
        .is_err());
    assert!(o
        .exec(&format!("CREATE TABLE t ({})", cols(10)), &[])
        .is_ok());
}

#[test]
fn reaching_the_size_limit_is_storage_full() {
    let (_d, s) = store_with(|c| c.limits.max_object_bytes = 256 * 1024);
    let mut o = s.open_object("a").unwrap();
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
    o.end_turn().unwrap().wait().unwrap();
    let mut err = None;
    for _ in 0..200 {
        if let Err(e) = o.exec("INSERT INTO t VALUES (randomblob(4000))", &[]) {
            err = Some(e);
            break;
        }
    }
    let err = err.expect("the limit was never hit");
    assert!(
        matches!(err.kind(), ErrorKind::StorageFull | ErrorKind::Broken),
        "{err:?}"
    );
    assert!(
        err.message().contains("size limit") || err.message().contains("full"),
        "{err}"
    );
    if err.kind() == ErrorKind::StorageFull && !o.is_broken() {
        // Statement-level failure: the turn's other writes survive.
        o.exec("DELETE FROM t", &[]).unwrap();
        o.end_turn().unwrap().wait().unwrap();
    }
}
