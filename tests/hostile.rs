//! Hostile input sweep, for the Rust API and the `amber` CLI: object names,
//! keys, values and SQL at and beyond every limit; malformed bookmarks,
//! timestamps and bucket URLs. Each one gets a typed error (a non-zero
//! exit and a message on stderr for the CLI), nothing panics, and the data
//! written before is intact afterwards.

use std::path::Path;
use std::process::Command;

use amber::pitr::{Bookmark, BucketUrl, RestoreOptions, RestoreTarget};
use amber::{
    BucketConfig, Config, DurabilityLevel, ErrorKind, Limits, Object, Store, Value, ValueRef,
    MAX_NAME_BYTES,
};

/// Runs `f` and requires a typed error of one of `kinds` (no panic).
#[track_caller]
fn refused<T: std::fmt::Debug>(what: &str, kinds: &[ErrorKind], r: amber::Result<T>) {
    match r {
        Ok(v) => panic!("{what}: accepted ({v:?})"),
        Err(e) => {
            assert!(kinds.contains(&e.kind()), "{what}: {:?}: {e}", e.kind());
            assert!(!e.to_string().is_empty(), "{what}: empty message");
        }
    }
}

const INPUT: &[ErrorKind] = &[ErrorKind::InvalidInput, ErrorKind::LimitExceeded];

fn baseline(o: &mut Object) {
    o.exec("CREATE TABLE IF NOT EXISTS keep (x)", &[]).unwrap();
    o.exec("INSERT INTO keep VALUES ('kept')", &[]).unwrap();
    o.put("keep", b"kept").unwrap();
    o.end_turn().unwrap().wait().unwrap();
}

#[track_caller]
fn intact(o: &mut Object) {
    assert!(!o.is_broken(), "a refused input broke the object");
    assert_eq!(o.get("keep").unwrap().as_deref(), Some(&b"kept"[..]));
    let rows = o.exec("SELECT x FROM keep", &[]).unwrap().to_vec().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get(0), Some(&Value::Text("kept".into())));
    o.integrity_check().unwrap();
}

#[test]
fn object_names_at_and_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut keep = store.open_object("keeper").unwrap();
    baseline(&mut keep);
    refused(
        "empty name",
        INPUT,
        store.open_object("").map(|o| o.name().to_string()),
    );
    refused(
        "name past the limit",
        INPUT,
        store
            .open_object(&"n".repeat(MAX_NAME_BYTES + 1))
            .map(|o| o.name().to_string()),
    );
    // At the limit, and names that look like paths, are just names.
    for name in [
        "n".repeat(MAX_NAME_BYTES),
        "../../etc/passwd".into(),
        "/".into(),
        "a\0b".into(),
        "é🦀\u{202e}".into(),
        " ".into(),
    ] {
        let mut o = store
            .open_object(&name)
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        o.put("k", b"v").unwrap();
        o.end_turn().unwrap().wait().unwrap();
        assert_eq!(o.name(), name);
        drop(o);
    }
    // Opened twice is a typed error, not a second writer.
    refused(
        "second handle",
        &[ErrorKind::Locked],
        store.open_object("keeper").map(|o| o.name().to_string()),
    );
    intact(&mut keep);
    let names: Vec<String> = store
        .list_objects()
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(names.contains(&"../../etc/passwd".to_string()));
    assert!(std::fs::read_dir(dir.path()).unwrap().flatten().all(|e| [
        "objects",
        "store.key",
        "bucket",
        "journal",
        "locks",
        "catalog.db",
        "catalog.db-wal",
        "catalog.db-shm"
    ]
    .contains(&e.file_name().to_str().unwrap())));
    // The name with a NUL byte lists whole.
    assert!(names.contains(&"a\0b".to_string()));
}

#[test]
fn keys_and_values_at_and_past_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let l = Limits::default();
    let mut o = store.open_object("kv").unwrap();
    baseline(&mut o);
    // At the limits: accepted.
    let max_key = "k".repeat(l.max_key_bytes);
    let max_val = vec![7u8; l.max_value_bytes];
    o.put(&max_key, &max_val).unwrap();
    o.put("", b"empty key").unwrap();
    o.put("nul\0inside", b"").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    assert_eq!(o.get(&max_key).unwrap().unwrap().len(), l.max_value_bytes);
    // Past them: refused, one byte over and far over.
    let long_key = "k".repeat(l.max_key_bytes + 1);
    refused("key + 1", INPUT, o.put(&long_key, b"v"));
    refused(
        "key x 100",
        INPUT,
        o.put(&"k".repeat(l.max_key_bytes * 100), b"v"),
    );
    refused("get key + 1", INPUT, o.get(&long_key));
    refused("delete key + 1", INPUT, o.delete(&long_key));
    refused(
        "value + 1",
        INPUT,
        o.put("v", &vec![0u8; l.max_value_bytes + 1]),
    );
    refused("value 8 MiB", INPUT, o.put("v", &vec![0u8; 8 << 20]));
    // A multi-key put with one bad entry is all-or-nothing.
    let big = vec![0u8; l.max_value_bytes + 1];
    refused(
        "put_many with one bad value",
        INPUT,
        o.put_many(&[("ok1", b"1".as_slice()), ("bad", big.as_slice())]),
    );
    assert_eq!(
        o.get("ok1").unwrap(),
        None,
        "a refused put_many wrote a key"
    );
    o.end_turn().unwrap().wait().unwrap();
    intact(&mut o);
    // Reopened, everything accepted is there.
    drop(o);
    let mut o = store.open_object("kv").unwrap();
    assert_eq!(o.get("").unwrap().as_deref(), Some(&b"empty key"[..]));
    assert_eq!(o.get("nul\0inside").unwrap().as_deref(), Some(&b""[..]));
    intact(&mut o);
}

#[test]
fn sql_at_and_past_every_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let l = Limits::default();
    let mut o = store.open_object("sql").unwrap();
    baseline(&mut o);
    let sql_err: &[ErrorKind] = &[
        ErrorKind::InvalidInput,
        ErrorKind::LimitExceeded,
        ErrorKind::NotAllowed,
    ];

    // Statement length: at the limit runs, past it is refused.
    let pad = |n: usize| {
        let head = "SELECT 1 /*";
        format!("{head}{}*/", " ".repeat(n - head.len() - 2))
    };
    o.exec(&pad(l.max_sql_length), &[]).unwrap();
    refused(
        "SQL + 1",
        sql_err,
        o.exec(&pad(l.max_sql_length + 1), &[]).map(|_| ()),
    );
    refused(
        "SQL 10 MB",
        sql_err,
        o.exec(&pad(10_000_000), &[]).map(|_| ()),
    );
    // Columns.
    let cols = |n: usize| {
        (0..n)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    o.exec(&format!("CREATE TABLE wide ({})", cols(l.max_columns)), &[])
        .unwrap();
    refused(
        "columns + 1",
        sql_err,
        o.exec(
            &format!("CREATE TABLE wider ({})", cols(l.max_columns + 1)),
            &[],
        )
        .map(|_| ()),
    );
    // Bound parameters.
    let params = |n: usize| {
        (1..=n)
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let vals: Vec<ValueRef<'_>> = (0..l.max_params + 1)
        .map(|i| ValueRef::Integer(i as i64))
        .collect();
    o.exec(
        &format!("SELECT {}", params(l.max_params)),
        &vals[..l.max_params],
    )
    .unwrap();
    refused(
        "params + 1",
        sql_err,
        o.exec(&format!("SELECT {}", params(l.max_params + 1)), &vals)
            .map(|_| ()),
    );
    refused(
        "too many values bound",
        sql_err,
        o.exec("SELECT ?1", &vals[..2]).map(|_| ()),
    );
    // Rows and values.
    let big = vec![1u8; l.max_row_bytes + 1];
    refused(
        "row + 1",
        sql_err,
        o.exec("INSERT INTO keep VALUES (?1)", &[ValueRef::Blob(&big)])
            .map(|_| ()),
    );
    refused(
        "zeroblob past the row limit",
        sql_err,
        o.exec(
            "SELECT zeroblob(?1)",
            &[ValueRef::Integer(l.max_row_bytes as i64 * 4)],
        )
        .map(|_| ()),
    );
    // LIKE patterns.
    let pat = "%".repeat(l.max_like_pattern + 1);
    o.exec(
        "SELECT 'a' LIKE ?1",
        &[ValueRef::Text(&pat[..l.max_like_pattern])],
    )
    .unwrap();
    refused(
        "LIKE pattern + 1",
        sql_err,
        o.exec("SELECT 'a' LIKE ?1", &[ValueRef::Text(&pat)])
            .and_then(|c| c.to_vec()),
    );
    // Nonsense, transaction control, escapes: typed errors.
    for bad in [
        "SELEC 1",
        "SELECT 1; SELEC 2",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT x",
        "ATTACH 'x.db' AS x",
        "VACUUM INTO 'y.db'",
        "SELECT load_extension('z')",
        "SELECT * FROM _amber_kv",
        "PRAGMA journal_mode = DELETE",
        "CREATE TEMP TABLE tt (a)",
    ] {
        refused(bad, sql_err, o.exec(bad, &[]).and_then(|c| c.to_vec()));
    }
    o.end_turn().unwrap().wait().unwrap();
    intact(&mut o);
    // The half-run multi-statement exec above did not break atomicity of
    // later turns.
    drop(o);
    let mut o = store.open_object("sql").unwrap();
    intact(&mut o);
}

#[test]
fn malformed_bookmarks_timestamps_and_bucket_urls() {
    // Bookmarks.
    let good = Bookmark::new(3, 77).to_string();
    assert_eq!(good.parse::<Bookmark>().unwrap(), Bookmark::new(3, 77));
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for bad in [
        "",
        "x",
        &good[..good.len() - 1],
        &format!("{good}0"),
        &good.replace('-', "_"),
        &good.to_uppercase(),
        &flipped,
        &"é".repeat(21),
        &"0".repeat(10_000),
    ] {
        let e = bad.parse::<Bookmark>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        assert!(!e.to_string().is_empty());
    }

    // Bucket URLs, through the parser and through Store::open.
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "bucket",
        "ftp://x/y",
        "file://relative/path",
        "file://host/abs",
        "memory://host",
        "s3://",
        "s3://A_B/p",
        "s3://user:pw@bucket/p",
        "s3://bucket/p?nonsense=1",
        "s3://bucket/p?region",
        "s3://bucket/p?region=a&region=b",
        "s3://bucket/p#frag",
        "s3://bucket/%zz",
        "file:///tmp/%ff%fe",
    ] {
        let e = BucketUrl::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}");
        let cfg = Config::new(dir.path().join("d")).with_bucket(BucketConfig::Url(bad.into()));
        refused(
            bad,
            &[ErrorKind::InvalidInput],
            Store::open(cfg).map(|_| ()),
        );
    }
    // Remote durability without a bucket is refused.
    let cfg = Config::new(dir.path().join("d2"))
        .with_bucket(BucketConfig::Disabled)
        .with_durability(DurabilityLevel::Remote);
    refused(
        "Remote without bucket",
        &[ErrorKind::InvalidInput],
        Store::open(cfg).map(|_| ()),
    );

    // Timestamps and restore targets against a real history.
    let data = dir.path().join("pitr");
    let store = Store::open(Config::new(&data).with_durability(DurabilityLevel::Remote)).unwrap();
    let mut o = store.open_object("p").unwrap();
    baseline(&mut o);
    // Regression: u64::MAX used to overflow the retention check
    // (`t_ms + retention`) and panic in debug builds.
    for t in [0, 1, u64::MAX, u64::MAX - 1, i64::MAX as u64 + 1] {
        // Outside retention, before history, or in the far future: a
        // typed error or the newest commit, never a panic.
        match o.bookmark_for_time(t) {
            Ok(b) => assert!(b <= o.current_bookmark(), "{t}: {b}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "{t}: {e}"),
        }
    }
    let out = dir.path().join("restored");
    for target in [
        RestoreTarget::Bookmark(Bookmark::new(99, 1)),
        RestoreTarget::Bookmark(Bookmark::new(0, u64::MAX)),
        RestoreTarget::Time(0),
        RestoreTarget::Time(u64::MAX),
    ] {
        let r = store.restore("p", target.clone(), &out, RestoreOptions::default());
        if let Ok(rep) = &r {
            // Only the far-future time may succeed, at the newest commit.
            assert_eq!(target, RestoreTarget::Time(u64::MAX));
            assert_eq!(rep.bookmark, o.current_bookmark());
            std::fs::remove_file(&out).unwrap();
        } else {
            refused(&format!("{target:?}"), INPUT, r);
        }
    }
    refused(
        "unknown object",
        INPUT,
        store.restore(
            "nobody",
            RestoreTarget::Latest,
            &out,
            RestoreOptions::default(),
        ),
    );
    std::fs::write(&out, b"precious").unwrap();
    refused(
        "restore over an existing file",
        &[ErrorKind::Io, ErrorKind::InvalidInput],
        store.restore("p", RestoreTarget::Latest, &out, RestoreOptions::default()),
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    refused(
        "restore_on_next_open to a bookmark that never existed",
        INPUT,
        o.restore_on_next_open(Bookmark::new(42, 42)),
    );
    intact(&mut o);
}

fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[track_caller]
fn cli_refuses(data: &Path, args: &[&str]) {
    let out = cli(data, args);
    let shown: Vec<String> = args.iter().map(|a| a.chars().take(40).collect()).collect();
    assert!(!out.status.success(), "{shown:?} succeeded");
    assert!(
        out.status.code().is_some(),
        "{shown:?} died of a signal: {:?}",
        out.status
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.trim().is_empty(), "{shown:?}: nothing on stderr");
    assert!(!err.contains("panicked"), "{shown:?} panicked: {err}");
}

#[test]
fn cli_refuses_hostile_input_and_keeps_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ok = cli(data, &["kv", "put", "o", "keep", "kept"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = cli(
        data,
        &[
            "sql",
            "o",
            "CREATE TABLE keep (x); INSERT INTO keep VALUES (1)",
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let long_name = "n".repeat(MAX_NAME_BYTES + 1);
    let long_key = "k".repeat(2049);
    let long_sql = format!("SELECT 1 /*{}*/", " ".repeat(100_000));
    // (A value past 128 KiB cannot be one argv string: Linux caps those at
    // 128 KiB. The library sweep covers it.)
    for args in [
        vec!["sql", "", "SELECT 1"],
        vec!["sql", &long_name, "SELECT 1"],
        vec!["sql", "o", "SELEC 1"],
        vec!["sql", "o", &long_sql],
        vec!["sql", "o", "ATTACH 'x.db' AS x"],
        vec!["sql", "o", "VACUUM INTO 'y.db'"],
        vec!["sql", "o", "SELECT * FROM _amber_kv"],
        vec!["sql", "o", "PRAGMA writable_schema = 1"],
        vec!["sql", "o", "BEGIN"],
        vec!["sql", "o", "SELECT ?1", "x:zz"],
        vec!["sql", "o", "SELECT ?1", "i:not-a-number"],
        vec!["sql", "o", "SELECT ?1", "f:1.2.3"],
        vec!["sql", "o", "SELECT ?1, ?2", "1"],
        vec!["kv", "put", "o", &long_key, "v"],
        vec!["kv", "put", "o", "k", "zz", "--hex"],
        vec!["kv", "put", "o", "k", "abc", "--hex"],
        vec!["kv", "get", "", "k"],
        vec!["kv", "get", "o", &long_key],
        vec!["kv", "delete", "o", &long_key],
        vec!["kv", "list", "o", "--limit", "-1"],
        vec!["kv", "list", "o", "--limit", "lots"],
        vec!["nonsense"],
    ] {
        cli_refuses(data, &args);
    }
    // A data directory that cannot exist.
    let out = Command::new(env!("CARGO_BIN_EXE_amber"))
        .args(["--data", "/dev/null/amber", "kv", "get", "o", "k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());

    // Nothing lost.
    let got = cli(data, &["kv", "get", "o", "keep"]);
    assert!(got.status.success());
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "kept");
    let got = cli(
        data,
        &["sql", "o", "SELECT count(*) AS n FROM keep", "--json"],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(String::from_utf8_lossy(&got.stdout).contains('1'));
    let store = Store::open(Config::new(data)).unwrap();
    let mut o = store.open_object("o").unwrap();
    o.integrity_check().unwrap();
}
