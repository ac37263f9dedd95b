//! Prepared statements. `RawStatement` owns the `sqlite3_stmt` and finalizes
//! it in `Drop`; `Statement<'conn>` borrows the connection it came from, so a
//! statement can never outlive its database handle.

use std::collections::HashMap;
use std::ffi::{c_int, CStr};
use std::ptr::NonNull;
use std::sync::Arc;

use libsqlite3_sys as ffi;

use super::connection::Connection;
use super::error::SqliteError;
use super::value::{Value, ValueRef};

/// The owner of one `sqlite3_stmt`. Not public: it has no lifetime, so it is
/// only handed out wrapped in a borrowing `Statement`.
pub(crate) struct RawStatement {
    ptr: NonNull<ffi::sqlite3_stmt>,
}

impl RawStatement {
    /// # Safety
    /// `ptr` must be a live statement that nobody else finalizes.
    pub(crate) unsafe fn from_raw(ptr: NonNull<ffi::sqlite3_stmt>) -> Self {
        RawStatement { ptr }
    }

    pub(crate) fn as_ptr(&self) -> *mut ffi::sqlite3_stmt {
        self.ptr.as_ptr()
    }

    pub(crate) fn reset(&self) {
        // SAFETY: the statement is live. reset only repeats the last step's
        // error, which the step already reported, so its result is ignored.
        unsafe {
            ffi::sqlite3_reset(self.as_ptr());
            ffi::sqlite3_clear_bindings(self.as_ptr());
        }
    }
}

impl Drop for RawStatement {
    fn drop(&mut self) {
        // SAFETY: we own the statement and drop it exactly once.
        unsafe {
            ffi::sqlite3_finalize(self.ptr.as_ptr());
        }
    }
}

/// Statements kept prepared per connection for user SQL. Internal SQL is
/// a fixed set of literals and is not counted.
const USER_CACHE_CAPACITY: usize = 64;

/// Which map of the cache a statement belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CacheKind {
    Internal,
    User,
}

/// A cached statement and what was learned about it.
pub(crate) struct CacheEntry {
    pub(crate) raw: RawStatement,
    tick: u64,
    columns: Option<Arc<[String]>>,
}

/// Prepared statements by SQL text, in two maps so user SQL can never get
/// hold of an internal statement.
#[derive(Default)]
pub(crate) struct StatementCache {
    pub(crate) internal: HashMap<String, CacheEntry>,
    pub(crate) user: HashMap<String, CacheEntry>,
    clock: u64,
}

impl StatementCache {
    pub(crate) fn put(&mut self, kind: CacheKind, key: String, mut entry: CacheEntry) {
        self.clock += 1;
        entry.tick = self.clock;
        let map = match kind {
            CacheKind::Internal => &mut self.internal,
            CacheKind::User => &mut self.user,
        };
        if kind == CacheKind::User && map.len() >= USER_CACHE_CAPACITY {
            let oldest = map
                .iter()
                .min_by_key(|(_, e)| e.tick)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(key, entry);
    }
}

/// A prepared statement borrowed from a connection.
pub struct Statement<'conn> {
    conn: &'conn Connection,
    raw: Option<RawStatement>,
    /// Set when the statement goes back to the connection's cache on drop.
    slot: Option<(CacheKind, String)>,
    columns: Option<Arc<[String]>>,
}

impl<'conn> Statement<'conn> {
    pub(crate) fn new(conn: &'conn Connection, raw: RawStatement) -> Self {
        Statement {
            conn,
            raw: Some(raw),
            slot: None,
            columns: None,
        }
    }

    pub(crate) fn from_cache(
        conn: &'conn Connection,
        kind: CacheKind,
        key: String,
        entry: CacheEntry,
    ) -> Self {
        Statement {
            conn,
            raw: Some(entry.raw),
            slot: Some((kind, key)),
            columns: entry.columns,
        }
    }

    fn ptr(&self) -> *mut ffi::sqlite3_stmt {
        self.raw
            .as_ref()
            .expect("statement is live until drop")
            .as_ptr()
    }

    /// Detaches the statement from this borrow of its connection, so it
    /// can be re-wrapped (with `from_parts`) under another borrow of the
    /// same connection.
    pub(crate) fn into_parts(mut self) -> StatementParts {
        StatementParts {
            raw: self.raw.take().expect("statement is live until drop"),
            slot: self.slot.take(),
            columns: self.columns.take(),
        }
    }

    /// # Panics
    /// Never; but `parts` must come from a statement of this same
    /// connection, which the crate guarantees by construction.
    pub(crate) fn from_parts(conn: &'conn Connection, parts: StatementParts) -> Self {
        Statement {
            conn,
            raw: Some(parts.raw),
            slot: parts.slot,
            columns: parts.columns,
        }
    }

    pub(crate) fn set_cache_slot(&mut self, kind: CacheKind, key: String) {
        self.slot = Some((kind, key));
    }

    /// Column names, computed once per prepared statement.
    pub fn columns(&mut self) -> Arc<[String]> {
        if let Some(c) = &self.columns {
            return c.clone();
        }
        let c: Arc<[String]> = Arc::from(self.column_names());
        self.columns = Some(c.clone());
        c
    }

    /// Binds `params`, steps to the end, and clears the bindings, without
    /// copying text or blobs: SQLite reads them in place, and they are
    /// borrowed for the whole call.
    pub(crate) fn run_borrowed(&mut self, params: &[ValueRef<'_>]) -> Result<(), SqliteError> {
        let p = self.ptr();
        let mut result = Ok(());
        for (i, v) in params.iter().enumerate() {
            let i = (i + 1) as c_int;
            // SAFETY: live statement. SQLITE_STATIC (None): SQLite reads the
            // caller's buffer until rebound or cleared, and `clear_bindings`
            // below runs before return, while `params` is still borrowed.
            let rc = unsafe {
                match *v {
                    ValueRef::Null => ffi::sqlite3_bind_null(p, i),
                    ValueRef::Integer(x) => ffi::sqlite3_bind_int64(p, i, x),
                    ValueRef::Real(x) => ffi::sqlite3_bind_double(p, i, x),
                    ValueRef::Text(s) => ffi::sqlite3_bind_text64(
                        p,
                        i,
                        s.as_ptr().cast(),
                        s.len() as u64,
                        None,
                        ffi::SQLITE_UTF8 as u8,
                    ),
                    ValueRef::Blob(b) => {
                        ffi::sqlite3_bind_blob64(p, i, b.as_ptr().cast(), b.len() as u64, None)
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                result = Err(self.conn.last_error(rc));
                break;
            }
        }
        if result.is_ok() {
            result = self.run();
        }
        // SAFETY: live statement; after this no pointer into `params` is
        // retained by SQLite.
        unsafe {
            ffi::sqlite3_reset(p);
            ffi::sqlite3_clear_bindings(p);
        }
        result
    }

    /// The SQL text of this statement.
    pub fn sql(&self) -> String {
        // SAFETY: live statement; the text is owned by it and copied here.
        unsafe {
            let p = ffi::sqlite3_sql(self.ptr());
            if p.is_null() {
                return String::new();
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    pub fn connection(&self) -> &'conn Connection {
        self.conn
    }

    pub fn parameter_count(&self) -> usize {
        // SAFETY: live statement.
        unsafe { ffi::sqlite3_bind_parameter_count(self.ptr()) as usize }
    }

    /// Binds 1-based parameter `i`.
    pub fn bind(&mut self, i: usize, value: ValueRef<'_>) -> Result<(), SqliteError> {
        let p = self.ptr();
        let i = i as c_int;
        // SAFETY: live statement; text and blob are copied by SQLite
        // (SQLITE_TRANSIENT) so the borrow may end after the call.
        let rc = unsafe {
            match value {
                ValueRef::Null => ffi::sqlite3_bind_null(p, i),
                ValueRef::Integer(v) => ffi::sqlite3_bind_int64(p, i, v),
                ValueRef::Real(v) => ffi::sqlite3_bind_double(p, i, v),
                ValueRef::Text(s) => ffi::sqlite3_bind_text64(
                    p,
                    i,
                    s.as_ptr().cast(),
                    s.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                ValueRef::Blob(b) => ffi::sqlite3_bind_blob64(
                    p,
                    i,
                    b.as_ptr().cast(),
                    b.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        self.conn.check(rc)
    }

    /// Binds all parameters in order; the count must match exactly.
    pub fn bind_all(&mut self, params: &[ValueRef<'_>]) -> Result<(), SqliteError> {
        let want = self.parameter_count();
        if want != params.len() {
            return Err(SqliteError::new(
                ffi::SQLITE_RANGE,
                format!(
                    "statement has {want} parameter(s) but {} were given",
                    params.len()
                ),
            ));
        }
        for (i, v) in params.iter().enumerate() {
            self.bind(i + 1, *v)?;
        }
        Ok(())
    }

    /// Advances. `Ok(true)` means a row is available.
    pub fn step(&mut self) -> Result<bool, SqliteError> {
        // SAFETY: live statement.
        let rc = unsafe { ffi::sqlite3_step(self.ptr()) };
        match rc {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => Err(self.conn.last_error(rc)),
        }
    }

    /// Steps to completion, discarding rows.
    pub fn run(&mut self) -> Result<(), SqliteError> {
        while self.step()? {}
        Ok(())
    }

    pub fn reset(&mut self) {
        if let Some(raw) = &self.raw {
            raw.reset();
        }
    }

    pub fn column_count(&self) -> usize {
        // SAFETY: live statement.
        unsafe { ffi::sqlite3_column_count(self.ptr()) as usize }
    }

    pub fn column_name(&self, i: usize) -> String {
        // SAFETY: live statement, i < column_count checked by callers; the
        // name is valid until the statement is re-prepared, and copied here.
        unsafe {
            let p = ffi::sqlite3_column_name(self.ptr(), i as c_int);
            if p.is_null() {
                return String::new();
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    pub fn column_names(&self) -> Vec<String> {
        (0..self.column_count())
            .map(|i| self.column_name(i))
            .collect()
    }

    pub fn column_i64(&self, i: usize) -> i64 {
        // SAFETY: live statement positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.ptr(), i as c_int) }
    }

    pub fn column_is_null(&self, i: usize) -> bool {
        // SAFETY: live statement positioned on a row.
        unsafe { ffi::sqlite3_column_type(self.ptr(), i as c_int) == ffi::SQLITE_NULL }
    }

    /// Reads column `i` of the current row as bytes (text or blob), copying.
    pub fn column_bytes(&self, i: usize) -> Vec<u8> {
        let p = self.ptr();
        // SAFETY: live statement on a row. sqlite3_column_blob must be called
        // before sqlite3_column_bytes; the pointer is valid for `len` bytes
        // until the next step, and we copy before returning.
        unsafe {
            let data = ffi::sqlite3_column_blob(p, i as c_int);
            let len = ffi::sqlite3_column_bytes(p, i as c_int) as usize;
            if data.is_null() || len == 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts(data as *const u8, len).to_vec()
        }
    }

    /// Reads column `i` of the current row as an owned value.
    pub fn column_value(&self, i: usize) -> Value {
        let p = self.ptr();
        let c = i as c_int;
        // SAFETY: live statement on a row; text and blob pointers are read
        // before any other call on this column and copied at once.
        unsafe {
            match ffi::sqlite3_column_type(p, c) {
                ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_column_int64(p, c)),
                ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_column_double(p, c)),
                ffi::SQLITE_TEXT => {
                    let t = ffi::sqlite3_column_text(p, c);
                    let len = ffi::sqlite3_column_bytes(p, c) as usize;
                    if t.is_null() {
                        Value::Text(String::new())
                    } else {
                        let bytes = std::slice::from_raw_parts(t, len);
                        Value::Text(String::from_utf8_lossy(bytes).into_owned())
                    }
                }
                ffi::SQLITE_BLOB => Value::Blob(self.column_bytes(i)),
                _ => Value::Null,
            }
        }
    }

    pub fn row_values(&self) -> Vec<Value> {
        (0..self.column_count())
            .map(|i| self.column_value(i))
            .collect()
    }

    /// True if the statement cannot write the database.
    pub fn readonly(&self) -> bool {
        // SAFETY: live statement.
        unsafe { ffi::sqlite3_stmt_readonly(self.ptr()) != 0 }
    }

    /// Rows visited by full-table scans, as counted by SQLite.
    pub fn fullscan_steps(&self) -> u64 {
        // SAFETY: live statement.
        unsafe {
            ffi::sqlite3_stmt_status(self.ptr(), ffi::SQLITE_STMTSTATUS_FULLSCAN_STEP, 0) as u64
        }
    }
}

/// A statement detached from its borrow; see `Statement::into_parts`.
pub(crate) struct StatementParts {
    raw: RawStatement,
    slot: Option<(CacheKind, String)>,
    columns: Option<Arc<[String]>>,
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            match self.slot.take() {
                Some((kind, key)) => self.conn.return_to_cache(
                    kind,
                    key,
                    CacheEntry {
                        raw,
                        tick: 0,
                        columns: self.columns.take(),
                    },
                ),
                None => drop(raw),
            }
        }
    }
}
