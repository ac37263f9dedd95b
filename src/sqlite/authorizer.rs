//! The SQL policy for user statements, enforced by SQLite's authorizer.
//!
//! The authorizer runs at prepare time (and again when SQLite re-prepares a
//! statement after a schema change). amber's own statements run with the
//! `internal` flag raised, so they can touch the reserved tables.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr};

use libsqlite3_sys as ffi;

/// Why a user statement was refused. Kept so the caller gets a typed error
/// with advice instead of SQLite's generic "not authorized".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Transaction(String),
    Attach,
    Temp,
    OtherSchema(String),
    Pragma(String),
    Reserved(String),
    Function(String),
    VirtualTable(String),
    Vacuum,
}

impl Denial {
    /// A message that says what was refused and what to use instead.
    pub fn advice(&self, reserved_prefix: &str) -> String {
        match self {
            Denial::Transaction(op) => format!(
                "SQL transaction control ({op}) is not allowed: every turn is already one \
                 transaction; use Object::transaction(|tx| ..) for an atomic, nestable block \
                 that rolls back on error"
            ),
            Denial::Attach => "ATTACH and DETACH are not allowed: an object has exactly one \
                 database; open another object instead"
                .into(),
            Denial::Temp => "TEMP tables, views, indexes and triggers are not allowed: \
                 create a regular one (it is dropped with the object's data by delete_all)"
                .into(),
            Denial::OtherSchema(s) => {
                format!("schema `{s}` is not accessible: only the object's `main` database is")
            }
            Denial::Pragma(p) => format!(
                "PRAGMA {p} is not allowed; the allowed pragmas are: {}",
                DEFAULT_PRAGMAS.join(", ")
            ),
            Denial::Reserved(name) => format!(
                "`{name}` uses the reserved prefix `{reserved_prefix}`: those tables belong to \
                 amber; use the KV API (get/put/list) and the alarm API instead"
            ),
            Denial::Function(f) => format!("function {f}() is not allowed"),
            Denial::VirtualTable(m) => {
                format!("virtual table module `{m}` is not allowed; only fts5 is")
            }
            Denial::Vacuum => "VACUUM is not allowed: amber reclaims space itself with \
                 incremental auto-vacuum; use database_size() to see the live size"
                .into(),
        }
    }
}

/// Pragmas a user statement may run (the Durable Objects allow-list).
pub const DEFAULT_PRAGMAS: &[&str] = &[
    "data_version",
    "defer_foreign_keys",
    "foreign_key_check",
    "foreign_key_list",
    "foreign_keys",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "optimize",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// Pragmas whose argument is a table or index name, checked against the
/// reserved prefix.
const NAME_PRAGMAS: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "table_info",
    "table_xinfo",
];

/// State the authorizer callback reads. Boxed by the connection so its
/// address is stable while SQLite holds a pointer to it.
pub(crate) struct AuthState {
    pub(crate) internal: Cell<bool>,
    pub(crate) denial: RefCell<Option<Denial>>,
    pub(crate) reserved_prefix: String,
    pub(crate) pragmas: Vec<String>,
}

impl AuthState {
    pub(crate) fn new(reserved_prefix: &str, pragmas: Vec<String>) -> Self {
        AuthState {
            internal: Cell::new(false),
            denial: RefCell::new(None),
            reserved_prefix: reserved_prefix.to_ascii_lowercase(),
            pragmas,
        }
    }

    fn is_reserved(&self, name: Option<&str>) -> bool {
        match name {
            Some(n) => {
                n.len() >= self.reserved_prefix.len()
                    && n.as_bytes()[..self.reserved_prefix.len()]
                        .eq_ignore_ascii_case(self.reserved_prefix.as_bytes())
            }
            None => false,
        }
    }

    /// The policy itself. `None` means allowed.
    fn check(
        &self,
        action: c_int,
        a1: Option<&str>,
        a2: Option<&str>,
        db: Option<&str>,
    ) -> Option<Denial> {
        if let Some(db) = db {
            if !db.eq_ignore_ascii_case("main") {
                return Some(if db.eq_ignore_ascii_case("temp") {
                    Denial::Temp
                } else {
                    Denial::OtherSchema(db.to_owned())
                });
            }
        }
        let reserved = |n: Option<&str>| {
            if self.is_reserved(n) {
                Some(Denial::Reserved(n.unwrap_or_default().to_owned()))
            } else {
                None
            }
        };
        match action {
            ffi::SQLITE_ATTACH | ffi::SQLITE_DETACH => Some(Denial::Attach),
            ffi::SQLITE_TRANSACTION => Some(Denial::Transaction(
                a1.unwrap_or("transaction").to_ascii_uppercase(),
            )),
            ffi::SQLITE_SAVEPOINT => Some(Denial::Transaction(format!(
                "{} {}",
                a1.unwrap_or("SAVEPOINT").to_ascii_uppercase(),
                a2.unwrap_or_default()
            ))),
            ffi::SQLITE_CREATE_TEMP_INDEX
            | ffi::SQLITE_CREATE_TEMP_TABLE
            | ffi::SQLITE_CREATE_TEMP_TRIGGER
            | ffi::SQLITE_CREATE_TEMP_VIEW
            | ffi::SQLITE_DROP_TEMP_INDEX
            | ffi::SQLITE_DROP_TEMP_TABLE
            | ffi::SQLITE_DROP_TEMP_TRIGGER
            | ffi::SQLITE_DROP_TEMP_VIEW => Some(Denial::Temp),
            ffi::SQLITE_PRAGMA => {
                let name = a1.unwrap_or_default().to_ascii_lowercase();
                if !self.pragmas.contains(&name) {
                    return Some(Denial::Pragma(name));
                }
                if NAME_PRAGMAS.contains(&name.as_str()) {
                    return reserved(a2);
                }
                None
            }
            ffi::SQLITE_FUNCTION => {
                let f = a2.unwrap_or_default();
                if f.eq_ignore_ascii_case("load_extension") {
                    Some(Denial::Function(f.to_owned()))
                } else {
                    None
                }
            }
            ffi::SQLITE_CREATE_VTABLE | ffi::SQLITE_DROP_VTABLE => {
                if let Some(d) = reserved(a1) {
                    return Some(d);
                }
                let module = a2.unwrap_or_default();
                if module.eq_ignore_ascii_case("fts5") {
                    None
                } else {
                    Some(Denial::VirtualTable(module.to_owned()))
                }
            }
            // a1 is an index or trigger name, a2 its table.
            ffi::SQLITE_CREATE_INDEX
            | ffi::SQLITE_DROP_INDEX
            | ffi::SQLITE_CREATE_TRIGGER
            | ffi::SQLITE_DROP_TRIGGER => reserved(a1).or_else(|| reserved(a2)),
            // a1 is the database name, a2 the table.
            ffi::SQLITE_ALTER_TABLE => reserved(a2),
            // a1 is a table (or view) name; for READ and UPDATE a2 is a column.
            ffi::SQLITE_CREATE_TABLE
            | ffi::SQLITE_CREATE_VIEW
            | ffi::SQLITE_DROP_TABLE
            | ffi::SQLITE_DROP_VIEW
            | ffi::SQLITE_DELETE
            | ffi::SQLITE_INSERT
            | ffi::SQLITE_READ
            | ffi::SQLITE_UPDATE
            | ffi::SQLITE_REINDEX => reserved(a1),
            // ANALYZE (and PRAGMA optimize) only gather planner statistics,
            // which amber's own tables benefit from too.
            ffi::SQLITE_ANALYZE => None,
            _ => None,
        }
    }
}

/// # Safety
/// Called by SQLite with `ctx` pointing at the `AuthState` registered by
/// `Connection::open`, which outlives the connection's statements; the string
/// arguments are NUL-terminated or null.
pub(crate) unsafe extern "C" fn authorize(
    ctx: *mut c_void,
    action: c_int,
    a1: *const c_char,
    a2: *const c_char,
    db: *const c_char,
    _inner: *const c_char,
) -> c_int {
    // A panic must not unwind into C.
    let result = std::panic::catch_unwind(|| {
        // SAFETY: see the function contract; the state is only read through
        // shared references and Cells on the connection's own thread.
        let state = unsafe { &*(ctx as *const AuthState) };
        if state.internal.get() {
            return ffi::SQLITE_OK;
        }
        let s = |p: *const c_char| {
            if p.is_null() {
                None
            } else {
                // SAFETY: non-null arguments are NUL-terminated strings that
                // live for the duration of the callback.
                unsafe { CStr::from_ptr(p) }.to_str().ok()
            }
        };
        match state.check(action, s(a1), s(a2), s(db)) {
            None => ffi::SQLITE_OK,
            Some(d) => {
                let mut slot = state.denial.borrow_mut();
                if slot.is_none() {
                    *slot = Some(d);
                }
                ffi::SQLITE_DENY
            }
        }
    });
    result.unwrap_or(ffi::SQLITE_DENY)
}

/// True if `sql` holds nothing but whitespace, comments and semicolons.
pub(crate) fn is_trivia(sql: &str) -> bool {
    let rest = skip_trivia(sql, true);
    rest == sql.len() || (sql.as_bytes()[rest..].starts_with(b"/*") && !sql[rest..].contains("*/"))
}

/// Index of the first byte after whitespace, comments (and semicolons).
fn skip_trivia(sql: &str, semicolons: bool) -> usize {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && ((b[i] as char).is_ascii_whitespace() || (semicolons && b[i] == b';'))
        {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            match sql[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 2,
                None => return i,
            }
        } else {
            return i;
        }
    }
}

/// The first keyword of a statement, skipping whitespace and comments.
pub(crate) fn leading_keyword(sql: &str) -> &str {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] as char).is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            match sql[i + 2..].find("*/") {
                Some(end) => i += 2 + end + 2,
                None => return "",
            }
        } else {
            break;
        }
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
        i += 1;
    }
    &sql[start..i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_keyword_skips_comments() {
        assert_eq!(leading_keyword("  -- hi\n /* x */ vacuum"), "vacuum");
        assert_eq!(leading_keyword("/* unterminated"), "");
        assert_eq!(leading_keyword(""), "");
        assert_eq!(leading_keyword("SELECT 1"), "SELECT");
    }

    #[test]
    fn trivia_is_only_comments_and_separators() {
        assert!(is_trivia(" ; -- done\n /* x */ ;"));
        assert!(is_trivia(""));
        assert!(!is_trivia("; SELECT 1"));
        assert!(is_trivia("/* open"));
    }

    #[test]
    fn reserved_prefix_is_case_insensitive() {
        let s = AuthState::new("_amber_", vec![]);
        assert!(s.is_reserved(Some("_AMBER_kv")));
        assert!(!s.is_reserved(Some("_amb")));
        assert!(!s.is_reserved(None));
    }
}
