//! The public error: a small `ErrorKind` that tells the caller what to do,
//! a message, and (for SQLite failures) SQLite's own codes.

use std::fmt;
use std::sync::Arc;

use crate::sqlite::{Denial, SqliteError};

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is wrong (bad name, malformed SQL, constraint violation,
    /// wrong parameter count). Fix the input; the object is unharmed.
    InvalidInput,
    /// amber's SQL policy refused the statement. The message says what to
    /// use instead. Fix the input; the object is unharmed.
    NotAllowed,
    /// A configured size limit was exceeded (key, value, statement, row).
    /// Fix the input; the object is unharmed.
    LimitExceeded,
    /// The object reached its maximum size. Delete data or raise the limit.
    StorageFull,
    /// Another handle, in this process or another, has the object open.
    /// Retry later or route the work to the holder.
    Locked,
    /// A commit or fsync failed, so the object's state is unknown. Every call
    /// fails until the object is reopened; pending tickets fail too.
    Broken,
    /// An I/O failure outside a commit (opening files, listing). Retry.
    Io,
    /// Stored bytes failed a check. Do not retry; restore or investigate.
    Corruption,
    /// The store or object is closed.
    Closed,
    /// A ticket's wait timed out; the commit may still become durable.
    Timeout,
    /// The runtime refused the event because the object's mailbox is full
    /// (backpressure). Retry later, with backoff.
    Overloaded,
    /// Cluster mode: another live host owns the object. `Error::owner`
    /// names its address; send the request there.
    NotOwner,
    /// Cluster mode: this host lost the object's ownership (its lease
    /// lapsed, or another host took the object over). Nothing after the
    /// loss was acknowledged; reopen the object, which routes to the owner.
    /// A commit whose ticket fails with `Fenced` has an unknown outcome,
    /// like a timeout: its upload may have landed before the takeover read
    /// the bucket, and then the new owner has it.
    Fenced,
}

impl ErrorKind {
    /// A short lowercase name, as in logs and the C API's messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotAllowed => "not allowed",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::StorageFull => "storage full",
            ErrorKind::Locked => "locked",
            ErrorKind::Broken => "broken",
            ErrorKind::Io => "i/o error",
            ErrorKind::Corruption => "corruption",
            ErrorKind::Closed => "closed",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotOwner => "not owner",
            ErrorKind::Fenced => "fenced",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    sqlite: Option<SqliteError>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// For `NotOwner`: the owning host's address.
    owner: Option<Arc<str>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cold]
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            sqlite: None,
            source: None,
            owner: None,
        }
    }

    /// An error of `kind` whose message is `source`'s, keeping `source`
    /// itself as `source()` so callers can downcast to the typed error.
    #[cold]
    pub(crate) fn with_source(
        kind: ErrorKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: source.to_string(),
            sqlite: None,
            source: Some(Arc::new(source)),
            owner: None,
        }
    }

    /// An error of `kind` whose message is `context: source`, keeping
    /// `source` as `source()`.
    #[cold]
    pub(crate) fn context(
        kind: ErrorKind,
        context: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            message: format!("{context}: {source}"),
            sqlite: None,
            source: Some(Arc::new(source)),
            owner: None,
        }
    }

    #[cold]
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    #[cold]
    pub(crate) fn limit(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::LimitExceeded, message)
    }

    #[cold]
    pub(crate) fn io(context: impl Into<String>, err: std::io::Error) -> Self {
        // ENOSPC and EDQUOT: the caller must free space, not just retry.
        let full = matches!(
            err.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        let message = match full {
            true => format!(
                "{}: {err} (the disk is full: free space on it)",
                context.into()
            ),
            false => format!("{}: {err}", context.into()),
        };
        Error {
            kind: if full {
                ErrorKind::StorageFull
            } else {
                ErrorKind::Io
            },
            message,
            sqlite: None,
            source: Some(Arc::new(err)),
            owner: None,
        }
    }

    #[cold]
    pub(crate) fn broken(cause: &Error) -> Self {
        Error {
            kind: ErrorKind::Broken,
            message: format!("object is broken and must be reopened: {}", cause.message),
            sqlite: cause.sqlite.clone(),
            source: Some(Arc::new(cause.clone())),
            owner: None,
        }
    }

    #[cold]
    pub(crate) fn denied(denial: &Denial, reserved_prefix: &str) -> Self {
        Error::new(ErrorKind::NotAllowed, denial.advice(reserved_prefix))
    }

    /// Maps a SQLite failure to the kind a caller acts on.
    #[cold]
    pub(crate) fn sqlite(err: SqliteError) -> Self {
        use crate::sqlite::codes;
        let kind = match err.code {
            codes::FULL => ErrorKind::StorageFull,
            codes::TOOBIG => ErrorKind::LimitExceeded,
            codes::IOERR => ErrorKind::Io,
            codes::CORRUPT | 26 /* NOTADB */ => ErrorKind::Corruption,
            codes::BUSY | 6 /* LOCKED */ => ErrorKind::Locked,
            codes::AUTH => ErrorKind::NotAllowed,
            _ => ErrorKind::InvalidInput,
        };
        let message = if kind == ErrorKind::StorageFull {
            format!(
                "object reached its size limit (max_object_bytes): {}",
                err.message
            )
        } else {
            err.message.clone()
        };
        Error {
            kind,
            message,
            sqlite: Some(err),
            source: None,
            owner: None,
        }
    }

    /// Whether SQLite answered "database or disk is full".
    pub(crate) fn is_sqlite_full(&self) -> bool {
        self.sqlite.as_ref().is_some_and(|s| s.is_full())
    }

    /// The same SQLite "database or disk is full", known to be the disk
    /// holding `dir` (`free` bytes left there), not the object's size limit:
    /// SQLite reports both the same way.
    pub(crate) fn disk_full(self, dir: &std::path::Path, free: u64) -> Self {
        let Some(sq) = self.sqlite.as_ref() else {
            return self;
        };
        Error {
            kind: ErrorKind::StorageFull,
            message: format!(
                "the disk holding {} is full ({free} bytes free): {}; free space on it, \
                 then reopen the object",
                dir.display(),
                sq.message
            ),
            sqlite: self.sqlite.clone(),
            source: None,
            owner: None,
        }
    }

    /// The same error, its message prefixed with where it happened.
    pub(crate) fn prefixed(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A `NotOwner` error for the object owned by the host at `addr`.
    #[cold]
    pub(crate) fn not_owner(addr: &str, message: impl Into<String>) -> Self {
        let mut e = Error::new(ErrorKind::NotOwner, message);
        e.owner = Some(Arc::from(addr));
        e
    }

    /// For `ErrorKind::NotOwner`: the address (`host:port`) of the host
    /// that owns the object.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// SQLite's (primary, extended) result codes, when SQLite reported it.
    pub fn sqlite_code(&self) -> Option<(i32, i32)> {
        self.sqlite.as_ref().map(|e| (e.code, e.extended))
    }

    /// True if retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Io | ErrorKind::Locked | ErrorKind::Timeout | ErrorKind::Overloaded
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.sqlite {
            d.field("sqlite_code", &s.extended);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        if let Some(s) = &self.sqlite {
            return Some(s);
        }
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<SqliteError> for Error {
    fn from(e: SqliteError) -> Self {
        Error::sqlite(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_display_as_distinct_names() {
        use ErrorKind::*;
        let kinds = [
            InvalidInput,
            NotAllowed,
            LimitExceeded,
            StorageFull,
            Locked,
            Broken,
            Io,
            Corruption,
            Closed,
            Timeout,
            Overloaded,
            NotOwner,
            Fenced,
        ];
        let names: std::collections::BTreeSet<String> =
            kinds.iter().map(|k| k.to_string()).collect();
        assert_eq!(names.len(), kinds.len());
        assert_eq!(StorageFull.to_string(), "storage full");
    }

    #[test]
    fn context_keeps_the_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::context(ErrorKind::Io, "writing x", io);
        assert_eq!(e.message(), "writing x: disk on fire");
        let src = std::error::Error::source(&e).expect("a source");
        assert!(src.downcast_ref::<std::io::Error>().is_some());
    }
}
