//! A small safe wrapper over `libsqlite3-sys`: one owner per raw handle,
//! borrows tied by lifetimes, SQLite's result codes kept in the error.
//! No raw `libsqlite3_sys` type leaves this module.

mod authorizer;
mod connection;
mod error;
mod statement;
mod value;
pub(crate) mod wal;

pub(crate) use authorizer::{is_trivia, leading_keyword};
pub use authorizer::{Denial, DEFAULT_PRAGMAS};
pub use connection::{Connection, Limit};
pub use error::SqliteError;
pub use statement::Statement;
pub(crate) use statement::{CacheKind, StatementParts};
pub use value::{Value, ValueRef};

/// The page size of every database amber creates: SQLite's default, which
/// amber never changes, so snapshots and size limits can count in pages.
pub(crate) const PAGE_SIZE: u32 = 4096;

/// The version of the bundled SQLite library.
pub fn sqlite_version() -> &'static str {
    // SAFETY: sqlite3_libversion returns a static NUL-terminated string.
    unsafe {
        std::ffi::CStr::from_ptr(libsqlite3_sys::sqlite3_libversion())
            .to_str()
            .unwrap_or("unknown")
    }
}

/// Primary result codes callers may want to match on.
pub mod codes {
    pub use libsqlite3_sys::{
        SQLITE_AUTH as AUTH, SQLITE_BUSY as BUSY, SQLITE_CONSTRAINT as CONSTRAINT,
        SQLITE_CORRUPT as CORRUPT, SQLITE_ERROR as ERROR, SQLITE_FULL as FULL,
        SQLITE_IOERR as IOERR, SQLITE_MISMATCH as MISMATCH, SQLITE_RANGE as RANGE,
        SQLITE_TOOBIG as TOOBIG,
    };
}
