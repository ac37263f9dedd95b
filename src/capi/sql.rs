//! `amber_exec`: SQL with bound parameters.

use std::ffi::{c_char, c_void};

use super::args::{bytes, c_str, utf8, Out};
use super::cursor::{new_cursor, AmberCursor};
use super::error::{AmberCode, CError, CResult, AMBER_ERR_INVALID_INPUT, AMBER_OK};
use super::handle::Ptr;
use super::object::{with_object, AmberObject};
use crate::sqlite::ValueRef;

/// SQL NULL.
pub const AMBER_TYPE_NULL: i32 = 0;
/// A 64-bit signed integer, in `integer`.
pub const AMBER_TYPE_INTEGER: i32 = 1;
/// A double, in `real`.
pub const AMBER_TYPE_REAL: i32 = 2;
/// UTF-8 text: `len` bytes at `data` (NULs allowed; not counted in `len`).
pub const AMBER_TYPE_TEXT: i32 = 3;
/// Bytes: `len` bytes at `data`.
pub const AMBER_TYPE_BLOB: i32 = 4;

/// A SQL value: a bound parameter going in, a column value coming out.
///
/// `kind` says which fields mean something (`AMBER_TYPE_*`); the others are
/// ignored going in and zero coming out. As a parameter, `data` is
/// borrowed for the call only, and may be NULL when `len` is 0. Coming out
/// of a cursor, `data` points into the cursor (see `amber_cursor_value`),
/// and text is followed by a NUL that `len` does not count.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AmberValue {
    pub kind: i32,
    pub integer: i64,
    pub real: f64,
    pub data: *const c_void,
    pub len: usize,
}

/// Converts C parameters into borrowed SQL values.
///
/// # Safety
/// `params` is NULL or points to `n` values whose `data` fields follow the
/// `AmberValue` contract, all valid for `'a`.
unsafe fn params<'a>(params: *const AmberValue, n: usize) -> CResult<Vec<ValueRef<'a>>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if params.is_null() {
        return Err(CError::null("params"));
    }
    // SAFETY: non-NULL, and the caller promises `n` readable values.
    let values = unsafe { std::slice::from_raw_parts(params, n) };
    let mut out = Vec::with_capacity(n);
    for (i, v) in values.iter().enumerate() {
        let what = format!("params[{i}]");
        out.push(match v.kind {
            AMBER_TYPE_NULL => ValueRef::Null,
            AMBER_TYPE_INTEGER => ValueRef::Integer(v.integer),
            AMBER_TYPE_REAL => ValueRef::Real(v.real),
            // SAFETY: the caller promises `len` readable bytes at `data`.
            AMBER_TYPE_TEXT => ValueRef::Text(unsafe { utf8(v.data.cast(), v.len, &what) }?),
            // SAFETY: as above.
            AMBER_TYPE_BLOB => ValueRef::Blob(unsafe { bytes(v.data.cast(), v.len, &what) }?),
            other => {
                return Err(CError::new(
                    AMBER_ERR_INVALID_INPUT,
                    format!("{what} has unknown type {other}"),
                ))
            }
        });
    }
    Ok(out)
}

/// Runs `sql` (one or more statements separated by `;`) with `params`
/// bound in order: each statement takes as many as it has placeholders,
/// and the count must match exactly.
///
/// Writes join the current turn. Transaction control (BEGIN, COMMIT,
/// SAVEPOINT...), ATTACH, TEMP objects, amber's reserved tables and
/// unlisted PRAGMAs are refused with `AMBER_ERR_NOT_ALLOWED`; malformed
/// SQL and constraint violations are `AMBER_ERR_INVALID_INPUT`.
///
/// `sql`: NUL-terminated UTF-8, borrowed for the call. `params`: an array
/// of `n_params` values, borrowed for the call (NULL when `n_params` is 0).
/// `out_cursor` (may be NULL to discard the rows) receives a new cursor
/// over the last statement's rows, owned by the caller and freed with
/// `amber_cursor_free`. The cursor holds its rows itself: it does not
/// borrow the object, may outlive it, and may be read on any thread. All
/// rows are read before this returns, so bound large results with LIMIT.
///
/// # Safety
/// `obj` is NULL or a live handle; `sql` is NULL or NUL-terminated;
/// `params` is NULL or points to `n_params` values whose `data` points to
/// `len` readable bytes; `out_cursor` is NULL or valid for writing one
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_exec(
    obj: *mut AmberObject,
    sql: *const c_char,
    params: *const AmberValue,
    n_params: usize,
    out_cursor: *mut *mut AmberCursor,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let sql = unsafe { c_str(sql, "sql") }?;
        // SAFETY: the caller's contract above.
        let values = unsafe { self::params(params, n_params) }?;
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_cursor) };
        let mut cursor = o.exec(sql, &values)?;
        let Some(out) = out else {
            // Every statement has taken its first step, so the writes
            // are done; the rows are not wanted.
            return Ok(AMBER_OK);
        };
        let columns = cursor.columns().to_vec();
        let mut rows = Vec::new();
        // A statement without columns returns no rows. Do not ask the
        // cursor: stepping a statement that already finished makes SQLite
        // run it again, and `Cursor::next_row` does that today.
        if !columns.is_empty() {
            while let Some(row) = cursor.next_row()? {
                rows.push(row.into_values());
            }
        }
        out.set(new_cursor(
            &columns,
            rows,
            cursor.rows_read(),
            cursor.rows_written(),
        ));
        Ok(AMBER_OK)
    })
}
