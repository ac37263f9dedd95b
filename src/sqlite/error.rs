//! SQLite result codes kept as data, so callers can tell a full disk from a
//! constraint violation without parsing messages.

use std::fmt;

use libsqlite3_sys as ffi;

/// An error reported by SQLite itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteError {
    /// Primary result code (`SQLITE_CONSTRAINT`, `SQLITE_FULL`, ...).
    pub code: i32,
    /// Extended result code (`SQLITE_CONSTRAINT_UNIQUE`, `SQLITE_IOERR_FSYNC`, ...).
    pub extended: i32,
    /// SQLite's message for this failure.
    pub message: String,
}

impl SqliteError {
    #[cold]
    pub(crate) fn new(extended: i32, message: impl Into<String>) -> Self {
        SqliteError {
            code: extended & 0xff,
            extended,
            message: message.into(),
        }
    }

    /// The English name SQLite gives the extended code.
    pub fn code_name(&self) -> &'static str {
        // SAFETY: sqlite3_errstr returns a pointer to a static, NUL-terminated
        // string for every input, including unknown codes.
        unsafe {
            let p = ffi::sqlite3_errstr(self.extended);
            if p.is_null() {
                return "unknown error";
            }
            std::ffi::CStr::from_ptr(p)
                .to_str()
                .unwrap_or("unknown error")
        }
    }

    pub fn is_full(&self) -> bool {
        self.code == ffi::SQLITE_FULL
    }

    pub fn is_io(&self) -> bool {
        self.code == ffi::SQLITE_IOERR
    }

    pub fn is_corrupt(&self) -> bool {
        self.code == ffi::SQLITE_CORRUPT || self.code == ffi::SQLITE_NOTADB
    }

    pub fn is_auth(&self) -> bool {
        self.code == ffi::SQLITE_AUTH
    }

    pub fn is_busy(&self) -> bool {
        self.code == ffi::SQLITE_BUSY || self.code == ffi::SQLITE_LOCKED
    }
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (sqlite code {})", self.message, self.extended)
    }
}

impl std::error::Error for SqliteError {}
