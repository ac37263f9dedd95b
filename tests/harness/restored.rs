//! Reads what a restored (or crashed) database file holds, below amber's
//! API: the KV table, the rows of the test table `t`, and the commit
//! sequence number.

use std::collections::BTreeMap;
use std::path::Path;

use amber::sqlite::{Connection, Value};

/// The observable state of one database file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbState {
    pub kv: BTreeMap<String, Vec<u8>>,
    /// Rows of `t (i INTEGER PRIMARY KEY, body BLOB)`, if the table exists.
    pub rows: Vec<(i64, Vec<u8>)>,
    pub seq: u64,
}

fn query(
    conn: &Connection,
    sql: &str,
    mut f: impl FnMut(&amber::sqlite::Statement<'_>),
) -> Result<(), String> {
    let (st, _) = conn
        .prepare_next(sql, false)
        .map_err(|e| format!("{sql}: {e}"))?;
    let Some(mut st) = st else { return Ok(()) };
    while st.step().map_err(|e| format!("{sql}: {e}"))? {
        f(&st);
    }
    Ok(())
}

/// Opens `path` read-only in spirit (nothing is written) and reads it.
/// Any damage is an `Err` naming what failed: integrity_check included.
pub fn read_db(path: &Path) -> Result<DbState, String> {
    // A private reserved prefix so amber's own tables are readable here.
    let conn = Connection::open(path, "\u{1}none", vec!["integrity_check".into()])
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let mut ok = Vec::new();
    query(&conn, "PRAGMA integrity_check", |st| {
        ok.push(st.column_value(0))
    })?;
    if ok != vec![Value::Text("ok".into())] {
        return Err(format!("integrity_check: {ok:?}"));
    }
    let mut s = DbState::default();
    query(&conn, "SELECT key, value FROM _amber_kv", |st| {
        s.kv.insert(
            String::from_utf8_lossy(&st.column_bytes(0)).into_owned(),
            st.column_bytes(1),
        );
    })?;
    let mut has_t = false;
    query(
        &conn,
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 't'",
        |_| has_t = true,
    )?;
    if has_t {
        query(&conn, "SELECT i, body FROM t ORDER BY i", |st| {
            s.rows.push((st.column_i64(0), st.column_bytes(1)));
        })?;
    }
    query(&conn, "SELECT seq FROM _amber_meta", |st| {
        s.seq = st.column_i64(0) as u64
    })?;
    Ok(s)
}
