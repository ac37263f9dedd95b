//! Result codes and the per-handle error slot.
//!
//! Every fallible function returns an `AmberCode`. A failure's message is
//! kept in the handle the call was made on, never in global or
//! thread-local state, so two handles used on two threads never see each
//! other's errors.

use std::any::Any;
use std::ffi::{c_char, CStr, CString};

use crate::error::{Error, ErrorKind};

/// A result code. Zero is success; small positive values are other
/// successful outcomes (`AMBER_PENDING`, `AMBER_ROW`, `AMBER_DONE`);
/// values from 100 up are errors.
pub type AmberCode = i32;

/// Success.
pub const AMBER_OK: AmberCode = 0;
/// A ticket's commit is not durable yet.
pub const AMBER_PENDING: AmberCode = 1;
/// `amber_cursor_next` moved to a row.
pub const AMBER_ROW: AmberCode = 2;
/// `amber_cursor_next` found no more rows.
pub const AMBER_DONE: AmberCode = 3;

/// The input is wrong: malformed SQL, a constraint violation, a wrong
/// parameter count, a bad name. Fix the input; the object is unharmed.
pub const AMBER_ERR_INVALID_INPUT: AmberCode = 100;
/// amber's SQL policy refused the statement (BEGIN, ATTACH, reserved
/// tables, unlisted PRAGMAs). The message says what to use instead.
pub const AMBER_ERR_NOT_ALLOWED: AmberCode = 101;
/// A configured size limit was exceeded (key, value, statement, row).
pub const AMBER_ERR_LIMIT_EXCEEDED: AmberCode = 102;
/// The object reached its maximum size.
pub const AMBER_ERR_STORAGE_FULL: AmberCode = 103;
/// Another handle, in this process or another, has the object open.
pub const AMBER_ERR_LOCKED: AmberCode = 104;
/// A commit or fsync failed; the object must be closed and reopened.
/// Pending tickets fail with this code too.
pub const AMBER_ERR_BROKEN: AmberCode = 105;
/// An I/O failure outside a commit. Retrying may succeed.
pub const AMBER_ERR_IO: AmberCode = 106;
/// Stored bytes failed a check. Do not retry.
pub const AMBER_ERR_CORRUPTION: AmberCode = 107;
/// The store, object or handle is closed.
pub const AMBER_ERR_CLOSED: AmberCode = 108;
/// A ticket wait timed out; the commit may still become durable.
pub const AMBER_ERR_TIMEOUT: AmberCode = 109;
/// A pointer argument that must not be NULL was NULL.
pub const AMBER_ERR_NULL_POINTER: AmberCode = 110;
/// A string argument that must be UTF-8 was not.
pub const AMBER_ERR_INVALID_UTF8: AmberCode = 111;
/// The handle is in use by another thread (a call is running on it, or
/// another thread has begun a turn on it). The handle's message is left
/// untouched: it belongs to the thread using the handle.
pub const AMBER_ERR_BUSY: AmberCode = 112;
/// The call is not valid in the handle's state (a second
/// `amber_object_begin_turn`, a column index out of range, freeing a
/// store from a ticket callback).
pub const AMBER_ERR_MISUSE: AmberCode = 113;
/// The feature exists in the ABI but not in this build.
pub const AMBER_ERR_UNSUPPORTED: AmberCode = 114;
/// A bug in amber: it panicked. The panic was caught at the boundary; an
/// object handle it happened on is closed.
pub const AMBER_ERR_INTERNAL: AmberCode = 115;
/// A string given as a bookmark is not one: not 42 characters, not
/// `<16 hex>-<16 hex>-<8 hex>` in lowercase, or its check digits do not
/// match (a typo). A well-formed bookmark that names no restorable commit
/// is `AMBER_ERR_INVALID_INPUT` instead.
pub const AMBER_ERR_BAD_BOOKMARK: AmberCode = 116;
/// A caller buffer is too small for what the call writes; nothing was
/// done. Bookmarks need `AMBER_BOOKMARK_SIZE` bytes.
pub const AMBER_ERR_BUFFER_TOO_SMALL: AmberCode = 117;
/// The object's mailbox is full (runtime backpressure); retry later.
pub const AMBER_ERR_OVERLOADED: AmberCode = 118;
/// Cluster mode: another live host owns the object; route the call there.
pub const AMBER_ERR_NOT_OWNER: AmberCode = 119;
/// Cluster mode: this host lost the object's ownership; reopen it.
pub const AMBER_ERR_FENCED: AmberCode = 120;

/// The name of a result code, such as "AMBER_ERR_BUSY", or "AMBER_UNKNOWN".
///
/// Ownership: a static string owned by the library; never free it.
#[no_mangle]
pub extern "C" fn amber_code_name(code: AmberCode) -> *const c_char {
    super::handle::guard(c"AMBER_UNKNOWN".as_ptr(), || code_name(code).as_ptr())
}

fn code_name(code: AmberCode) -> &'static CStr {
    match code {
        AMBER_OK => c"AMBER_OK",
        AMBER_PENDING => c"AMBER_PENDING",
        AMBER_ROW => c"AMBER_ROW",
        AMBER_DONE => c"AMBER_DONE",
        AMBER_ERR_INVALID_INPUT => c"AMBER_ERR_INVALID_INPUT",
        AMBER_ERR_NOT_ALLOWED => c"AMBER_ERR_NOT_ALLOWED",
        AMBER_ERR_LIMIT_EXCEEDED => c"AMBER_ERR_LIMIT_EXCEEDED",
        AMBER_ERR_STORAGE_FULL => c"AMBER_ERR_STORAGE_FULL",
        AMBER_ERR_LOCKED => c"AMBER_ERR_LOCKED",
        AMBER_ERR_BROKEN => c"AMBER_ERR_BROKEN",
        AMBER_ERR_IO => c"AMBER_ERR_IO",
        AMBER_ERR_CORRUPTION => c"AMBER_ERR_CORRUPTION",
        AMBER_ERR_CLOSED => c"AMBER_ERR_CLOSED",
        AMBER_ERR_TIMEOUT => c"AMBER_ERR_TIMEOUT",
        AMBER_ERR_NULL_POINTER => c"AMBER_ERR_NULL_POINTER",
        AMBER_ERR_INVALID_UTF8 => c"AMBER_ERR_INVALID_UTF8",
        AMBER_ERR_BUSY => c"AMBER_ERR_BUSY",
        AMBER_ERR_MISUSE => c"AMBER_ERR_MISUSE",
        AMBER_ERR_UNSUPPORTED => c"AMBER_ERR_UNSUPPORTED",
        AMBER_ERR_INTERNAL => c"AMBER_ERR_INTERNAL",
        AMBER_ERR_BAD_BOOKMARK => c"AMBER_ERR_BAD_BOOKMARK",
        AMBER_ERR_BUFFER_TOO_SMALL => c"AMBER_ERR_BUFFER_TOO_SMALL",
        AMBER_ERR_OVERLOADED => c"AMBER_ERR_OVERLOADED",
        AMBER_ERR_NOT_OWNER => c"AMBER_ERR_NOT_OWNER",
        AMBER_ERR_FENCED => c"AMBER_ERR_FENCED",
        _ => c"AMBER_UNKNOWN",
    }
}

/// The code a caller acts on for an amber error.
pub(crate) fn code_of(kind: ErrorKind) -> AmberCode {
    match kind {
        ErrorKind::InvalidInput => AMBER_ERR_INVALID_INPUT,
        ErrorKind::NotAllowed => AMBER_ERR_NOT_ALLOWED,
        ErrorKind::LimitExceeded => AMBER_ERR_LIMIT_EXCEEDED,
        ErrorKind::StorageFull => AMBER_ERR_STORAGE_FULL,
        ErrorKind::Locked => AMBER_ERR_LOCKED,
        ErrorKind::Broken => AMBER_ERR_BROKEN,
        ErrorKind::Io => AMBER_ERR_IO,
        ErrorKind::Corruption => AMBER_ERR_CORRUPTION,
        ErrorKind::Closed => AMBER_ERR_CLOSED,
        ErrorKind::Timeout => AMBER_ERR_TIMEOUT,
        ErrorKind::Overloaded => AMBER_ERR_OVERLOADED,
        ErrorKind::NotOwner => AMBER_ERR_NOT_OWNER,
        ErrorKind::Fenced => AMBER_ERR_FENCED,
    }
}

/// A failure on its way to C: a code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CError {
    pub(crate) code: AmberCode,
    pub(crate) message: String,
}

pub(crate) type CResult<T> = Result<T, CError>;

impl CError {
    #[cold]
    pub(crate) fn new(code: AmberCode, message: impl Into<String>) -> Self {
        CError {
            code,
            message: message.into(),
        }
    }

    #[cold]
    pub(crate) fn null(what: &str) -> Self {
        CError::new(AMBER_ERR_NULL_POINTER, format!("`{what}` is NULL"))
    }

    #[cold]
    pub(crate) fn misuse(message: impl Into<String>) -> Self {
        CError::new(AMBER_ERR_MISUSE, message)
    }

    #[cold]
    pub(crate) fn closed(what: &str) -> Self {
        CError::new(AMBER_ERR_CLOSED, format!("the {what} handle is closed"))
    }

    /// A caught panic: the message names amber as the culprit.
    #[cold]
    pub(crate) fn panic(payload: &(dyn Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        CError::new(
            AMBER_ERR_INTERNAL,
            format!("internal error in amber (please report it): {what}"),
        )
    }
}

impl From<Error> for CError {
    #[cold]
    fn from(e: Error) -> Self {
        CError::new(code_of(e.kind()), e.message())
    }
}

/// Turns a string into a C string, replacing interior NULs so that no
/// message or name is ever cut short silently.
pub(crate) fn to_cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{FFFD}")).unwrap_or_default()
}

/// The last outcome of a call on one handle.
#[derive(Default)]
pub(crate) struct ErrorSlot {
    message: Option<CString>,
}

impl ErrorSlot {
    /// Records the outcome of a call and returns its code.
    pub(crate) fn record(&mut self, res: CResult<AmberCode>) -> AmberCode {
        match res {
            Ok(code) => {
                self.message = None;
                code
            }
            Err(e) => {
                self.message = Some(to_cstring(&e.message));
                e.code
            }
        }
    }

    /// The last failure's message, or "not an error". The pointer lives
    /// until the slot is next written.
    pub(crate) fn message_ptr(&self) -> *const c_char {
        match &self.message {
            Some(m) => m.as_ptr(),
            None => c"not an error".as_ptr(),
        }
    }
}

/// What `amber_*_errmsg` returns while another thread uses the handle.
pub(crate) const BUSY_MESSAGE: &CStr = c"the handle is in use by another thread";
/// What `amber_*_errmsg` returns for a NULL handle.
pub(crate) const NULL_HANDLE_MESSAGE: &CStr = c"the handle is NULL";
