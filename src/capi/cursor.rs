//! `AmberCursor`: the rows `amber_exec` returned, with their column names.

use std::ffi::{c_char, c_void, CString};

use super::args::Out;
use super::error::{to_cstring, AmberCode, CError, ErrorSlot, AMBER_DONE, AMBER_OK, AMBER_ROW};
use std::sync::Mutex;

use super::handle::{self, into_raw, Handle, Ptr, State};
use super::sql::{
    AmberValue, AMBER_TYPE_BLOB, AMBER_TYPE_INTEGER, AMBER_TYPE_NULL, AMBER_TYPE_REAL,
    AMBER_TYPE_TEXT,
};
use crate::sqlite::Value;

/// A result set. Made by `amber_exec`, freed by `amber_cursor_free`.
/// Independent of the object it came from. Used by one thread at a time.
pub struct AmberCursor {
    columns: Vec<CString>,
    rows_read: u64,
    rows_written: u64,
    cell: Mutex<CursorState>,
}

/// A column value as C reads it: text keeps a trailing NUL.
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    /// The text's bytes followed by one NUL.
    Text(Box<[u8]>),
    Blob(Box<[u8]>),
}

impl From<Value> for Cell {
    fn from(v: Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Integer(i) => Cell::Integer(i),
            Value::Real(r) => Cell::Real(r),
            Value::Text(mut s) => {
                s.push('\0');
                Cell::Text(s.into_bytes().into_boxed_slice())
            }
            Value::Blob(b) => Cell::Blob(b.into_boxed_slice()),
        }
    }
}

impl Cell {
    fn to_c(&self) -> AmberValue {
        let mut v = AmberValue {
            kind: AMBER_TYPE_NULL,
            integer: 0,
            real: 0.0,
            data: std::ptr::null(),
            len: 0,
        };
        match self {
            Cell::Null => {}
            Cell::Integer(i) => {
                v.kind = AMBER_TYPE_INTEGER;
                v.integer = *i;
            }
            Cell::Real(r) => {
                v.kind = AMBER_TYPE_REAL;
                v.real = *r;
            }
            Cell::Text(t) => {
                v.kind = AMBER_TYPE_TEXT;
                v.data = t.as_ptr().cast::<c_void>();
                v.len = t.len() - 1;
            }
            Cell::Blob(b) => {
                v.kind = AMBER_TYPE_BLOB;
                v.data = if b.is_empty() {
                    std::ptr::null()
                } else {
                    b.as_ptr().cast::<c_void>()
                };
                v.len = b.len();
            }
        }
        v
    }
}

pub(crate) struct CursorState {
    rows: Vec<Vec<Cell>>,
    /// Index of the current row; `None` before the first `next`.
    current: Option<usize>,
    slot: ErrorSlot,
}

impl State for CursorState {
    fn slot(&mut self) -> &mut ErrorSlot {
        &mut self.slot
    }
}

impl Handle for AmberCursor {
    type State = CursorState;
    fn cell(&self) -> &Mutex<CursorState> {
        &self.cell
    }
}

pub(crate) fn new_cursor(
    columns: &[String],
    rows: Vec<Vec<Value>>,
    rows_read: u64,
    rows_written: u64,
) -> *mut AmberCursor {
    let rows = rows
        .into_iter()
        .map(|r| r.into_iter().map(Cell::from).collect())
        .collect();
    into_raw(AmberCursor {
        columns: columns.iter().map(|c| to_cstring(c)).collect(),
        rows_read,
        rows_written,
        cell: Mutex::new(CursorState {
            rows,
            current: None,
            slot: ErrorSlot::default(),
        }),
    })
}

/// Runs `f` on a cursor that needs no claim (its immutable parts).
///
/// # Safety
/// `cursor` is NULL or a live handle.
unsafe fn immutable<T: Copy>(
    cursor: *const AmberCursor,
    default: T,
    f: impl FnOnce(&AmberCursor) -> T,
) -> T {
    handle::guard(default, || {
        // SAFETY: forwarded from the caller.
        match unsafe { cursor.as_ref() } {
            Some(c) => f(c),
            None => default,
        }
    })
}

/// Number of columns of the result (0 for a statement without results, or
/// a NULL cursor).
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_column_count(cursor: *const AmberCursor) -> usize {
    // SAFETY: the caller's contract above.
    unsafe { immutable(cursor, 0, |c| c.columns.len()) }
}

/// The name of column `index`, NUL-terminated, or NULL when `index` is out
/// of range. Owned by the cursor; valid until `amber_cursor_free`.
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_column_name(
    cursor: *const AmberCursor,
    index: usize,
) -> *const c_char {
    // SAFETY: the caller's contract above.
    unsafe {
        immutable(cursor, std::ptr::null(), |c| {
            c.columns
                .get(index)
                .map_or(std::ptr::null(), |n| n.as_ptr())
        })
    }
}

/// Rows read by the statements of the `amber_exec` call: rows returned plus
/// rows visited by full scans.
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_rows_read(cursor: *const AmberCursor) -> u64 {
    // SAFETY: the caller's contract above.
    unsafe { immutable(cursor, 0, |c| c.rows_read) }
}

/// Rows inserted, updated or deleted by the statements of the `amber_exec`
/// call.
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_rows_written(cursor: *const AmberCursor) -> u64 {
    // SAFETY: the caller's contract above.
    unsafe { immutable(cursor, 0, |c| c.rows_written) }
}

/// Moves to the next row: `AMBER_ROW` when there is one, `AMBER_DONE` when
/// the rows are exhausted (and on every later call).
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_next(cursor: *mut AmberCursor) -> AmberCode {
    // SAFETY: the caller's contract above.
    let cursor = unsafe { Ptr::new(cursor) };
    handle::call(cursor, |st| {
        let next = st.current.map_or(0, |i| i.saturating_add(1));
        if next < st.rows.len() {
            st.current = Some(next);
            Ok(AMBER_ROW)
        } else {
            st.current = Some(st.rows.len());
            Ok(AMBER_DONE)
        }
    })
}

/// Reads column `index` of the current row into `out_value`.
///
/// Text and blob bytes stay owned by the cursor: `out_value->data` is valid
/// until the next `amber_cursor_next` on this cursor or its free, whichever
/// comes first. Text is UTF-8 followed by a NUL; an empty blob has NULL
/// `data`. `AMBER_ERR_MISUSE` when there is no current row or `index` is
/// out of range.
///
/// # Safety
/// `cursor` is NULL or a live handle; `out_value` is NULL or valid for
/// writing one `AmberValue`.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_value(
    cursor: *mut AmberCursor,
    index: usize,
    out_value: *mut AmberValue,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let cursor = unsafe { Ptr::new(cursor) };
    handle::call(cursor, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_value, "out_value") }?;
        let row = st
            .current
            .and_then(|i| st.rows.get(i))
            .ok_or_else(|| CError::misuse("no current row: call amber_cursor_next first"))?;
        let cell = row.get(index).ok_or_else(|| {
            CError::misuse(format!(
                "column {index} is out of range; the row has {}",
                row.len()
            ))
        })?;
        out.set(cell.to_c());
        Ok(AMBER_OK)
    })
}

/// The message of the last failed call on `cursor`, or "not an error".
///
/// Ownership: owned by the handle; valid until the next call with this
/// handle or its free. Never NULL.
///
/// # Safety
/// `cursor` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_errmsg(cursor: *const AmberCursor) -> *const c_char {
    // SAFETY: the caller's contract above.
    let cursor = unsafe { Ptr::new(cursor) };
    handle::errmsg(cursor)
}

/// Frees a cursor and every value it handed out. NULL is a no-op. Returns
/// `AMBER_ERR_BUSY` (freeing nothing) while another thread uses it.
///
/// # Safety
/// `cursor` is NULL or a live handle; after `AMBER_OK` it must not be used
/// again.
#[no_mangle]
pub unsafe extern "C" fn amber_cursor_free(cursor: *mut AmberCursor) -> AmberCode {
    // SAFETY: the caller's contract above.
    let cursor = unsafe { Ptr::new(cursor) };
    handle::free(cursor, false, drop)
}
