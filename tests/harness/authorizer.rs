//! The `authorizer` target: arbitrary SQL through `Object::exec`. Whatever
//! the text, it must not
//! - reach another file: no new file appears in the store, in the working
//!   directory, or at any path named by a string literal of the SQL
//!   (ATTACH, VACUUM INTO, load_extension, ...);
//! - read or change amber's reserved `_amber_` tables (their schema, the
//!   KV sentinel, the meta row), or the journal mode (a forbidden PRAGMA);
//! - crash, or leave the object unusable without a typed error: after a
//!   refused statement the object still works, and after any statement
//!   the database passes `integrity_check` on reopen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use amber::sqlite::{Connection, Value};
use amber::{BucketConfig, Config, Store};

const SENTINEL: &[u8] = b"SENTINEL-kv-9f3a";

fn files(root: &Path, out: &mut BTreeSet<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            files(&p, out);
        } else {
            out.insert(p);
        }
    }
}

fn cwd_entries() -> BTreeSet<PathBuf> {
    std::fs::read_dir(".")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The contents of single-quoted string literals (and the text with its
/// quotes stripped), as paths a statement might name.
fn literals(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut parts = sql.split('\'');
    parts.next();
    while let Some(inside) = parts.next() {
        if !inside.is_empty() && inside.len() < 256 {
            out.push(inside.to_string());
        }
        parts.next();
    }
    out
}

/// What only amber may change: the reserved schema, KV and meta rows, and
/// the journal mode.
fn reserved_state(db: &Path) -> (Vec<Value>, Vec<Value>, Vec<Value>, Vec<Value>) {
    let conn = Connection::open(
        db,
        "\u{1}none",
        vec!["journal_mode".into(), "integrity_check".into()],
    )
    .expect("open the database below amber");
    let q = |sql: &str| {
        let (st, _) = conn.prepare_next(sql, false).expect(sql);
        let mut st = st.expect(sql);
        let mut out = Vec::new();
        while st.step().expect(sql) {
            for i in 0..st.column_count() {
                out.push(st.column_value(i));
            }
        }
        out
    };
    // (integrity_check runs through amber at the end: below amber, the
    // checks of an fts5 table are refused by the user-mode authorizer.)
    (
        q("SELECT type, name, tbl_name, sql FROM sqlite_schema \
           WHERE name LIKE '\\_amber\\_%' ESCAPE '\\' ORDER BY name"),
        q("SELECT key, value FROM _amber_kv ORDER BY key"),
        q("SELECT schema_version, name, epoch FROM _amber_meta"),
        q("PRAGMA journal_mode"),
    )
}

pub fn run(data: &[u8]) {
    let sql = String::from_utf8_lossy(&data[..data.len().min(4096)]).into_owned();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut cfg = Config::new(&dir).with_bucket(BucketConfig::Disabled);
    cfg.sync_threads = 1;
    let store = Store::open(cfg).expect("store");
    let mut o = store.open_object("a").expect("object");
    o.exec("CREATE TABLE t (x, y)", &[]).expect("create");
    o.exec("INSERT INTO t VALUES (1, 'one'), (2, x'00ff')", &[])
        .expect("insert");
    o.put("sentinel", SENTINEL).expect("put");
    o.end_turn().expect("turn").wait().expect("durable");
    let db = o.dir().join("db");
    let obj_dir = o.dir().to_path_buf();
    drop(o);
    let before_reserved = reserved_state(&db);
    let mut before = BTreeSet::new();
    files(tmp.path(), &mut before);
    let before_cwd = cwd_entries();
    let named: Vec<(String, bool)> = literals(&sql)
        .into_iter()
        .map(|p| {
            let exists = Path::new(&p).exists();
            (p, exists)
        })
        .collect();

    let mut o = store.open_object("a").expect("reopen");
    // At most a few thousand rows: an endless recursive CTE is not what
    // this target is about.
    let result = o.exec(&sql, &[]).and_then(|mut c| {
        let mut rows = Vec::new();
        while let Some(r) = c.next_row()? {
            rows.push(r);
            if rows.len() >= 4096 {
                break;
            }
        }
        Ok(rows)
    });
    match &result {
        Ok(rows) => {
            for r in rows {
                for v in r.values() {
                    let leaked = match v {
                        Value::Blob(b) => b.windows(SENTINEL.len()).any(|w| w == SENTINEL),
                        Value::Text(t) => t.contains("SENTINEL-kv"),
                        _ => false,
                    };
                    assert!(!leaked, "a reserved table's content leaked: {sql:?}");
                }
            }
        }
        Err(_) if !o.is_broken() => {
            // A refused statement leaves the object usable.
            o.put("after", b"1")
                .expect("usable after a refused statement");
        }
        Err(_) => {}
    }
    let ended = o.end_turn().and_then(|t| t.wait());
    if ended.is_ok() {
        // The next turn works too.
        o.put("after", b"2").expect("usable");
        o.end_turn().expect("turn").wait().expect("durable");
    }
    drop(o);

    let mut after = BTreeSet::new();
    files(tmp.path(), &mut after);
    for f in after.difference(&before) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // The store journal may start a file on any commit.
        let journal = obj_dir.ancestors().nth(3).map(|data| data.join("journal"));
        let allowed = (f.parent() == Some(obj_dir.as_path())
            && matches!(name, "db-wal" | "db-shm" | "db-journal"))
            || (f.parent() == journal.as_deref()
                && (name.ends_with(".jnl") || name.starts_with("spare-")));
        assert!(allowed, "{sql:?} created {}", f.display());
    }
    let new_cwd: Vec<_> = cwd_entries().difference(&before_cwd).cloned().collect();
    assert!(new_cwd.is_empty(), "{sql:?} created {new_cwd:?}");
    for (p, existed) in &named {
        if !existed {
            assert!(!Path::new(p).exists(), "{sql:?} created {p}");
        }
    }
    // The reserved tables are amber's alone. The KV table may have gained
    // the `after` key (written through the API above), nothing else.
    let (schema, kv, meta, journal) = reserved_state(&db);
    assert_eq!(
        schema, before_reserved.0,
        "reserved schema changed by {sql:?}"
    );
    let kv: Vec<Value> = kv
        .chunks(2)
        .filter(|c| c[0] != Value::Text("after".into()))
        .flatten()
        .cloned()
        .collect();
    assert_eq!(kv, before_reserved.1, "reserved KV changed by {sql:?}");
    assert_eq!(meta, before_reserved.2, "meta row changed by {sql:?}");
    assert_eq!(
        journal, before_reserved.3,
        "journal mode changed by {sql:?}"
    );
    // And the store still opens the object.
    let mut o = store.open_object("a").expect("open after");
    o.integrity_check().expect("integrity");
}
