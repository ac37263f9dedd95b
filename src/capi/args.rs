//! Checked conversions from C arguments: NULL pointers and invalid UTF-8
//! become error codes before any work is done.

use std::ffi::{c_char, CStr};
use std::ptr::NonNull;

use super::error::{CError, CResult, AMBER_ERR_INVALID_INPUT, AMBER_ERR_INVALID_UTF8};

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid and
/// unchanged for `'a`.
pub(crate) unsafe fn c_str<'a>(p: *const c_char, what: &str) -> CResult<&'a str> {
    if p.is_null() {
        return Err(CError::null(what));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| invalid_utf8(what, e.valid_up_to()))
}

/// A NUL-terminated string taken as raw bytes (paths need not be UTF-8).
///
/// # Safety
/// As for [`c_str`].
pub(crate) unsafe fn c_bytes<'a>(p: *const c_char, what: &str) -> CResult<&'a [u8]> {
    if p.is_null() {
        return Err(CError::null(what));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(p) }.to_bytes())
}

/// A byte buffer given as pointer and length. NULL is allowed when the
/// length is zero.
///
/// # Safety
/// When `len > 0`, `p` is NULL or points to `len` readable bytes that stay
/// valid and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> CResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(CError::null(what));
    }
    if len > isize::MAX as usize {
        return Err(CError::new(
            AMBER_ERR_INVALID_INPUT,
            format!("`{what}` length {len} is impossibly large"),
        ));
    }
    // SAFETY: non-NULL, `len` fits in isize, and the caller promises `len`
    // readable bytes living for `'a`. u8 has no alignment requirement.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A UTF-8 string given as pointer and length (it may contain NULs).
///
/// # Safety
/// As for [`bytes`].
pub(crate) unsafe fn utf8<'a>(p: *const c_char, len: usize, what: &str) -> CResult<&'a str> {
    // SAFETY: forwarded from the caller.
    let b = unsafe { bytes(p.cast(), len, what) }?;
    std::str::from_utf8(b).map_err(|e| invalid_utf8(what, e.valid_up_to()))
}

/// An optional UTF-8 string: NULL means absent, whatever the length.
///
/// # Safety
/// As for [`bytes`] when `p` is not NULL.
pub(crate) unsafe fn opt_utf8<'a>(
    p: *const c_char,
    len: usize,
    what: &str,
) -> CResult<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded from the caller.
    unsafe { utf8(p, len, what) }.map(Some)
}

#[cold]
fn invalid_utf8(what: &str, at: usize) -> CError {
    CError::new(
        AMBER_ERR_INVALID_UTF8,
        format!("`{what}` is not valid UTF-8 (bad byte at offset {at})"),
    )
}

/// An out-parameter: checked for NULL up front, written once at the end.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// A required out-parameter.
    ///
    /// # Safety
    /// `p` is NULL or valid for one write of `T`, suitably aligned, until
    /// the `Out` is used.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> CResult<Out<T>> {
        NonNull::new(p).map(Out).ok_or_else(|| CError::null(what))
    }

    /// An out-parameter the caller may pass as NULL to ignore.
    ///
    /// # Safety
    /// As for [`Out::new`].
    pub(crate) unsafe fn optional(p: *mut T) -> Option<Out<T>> {
        NonNull::new(p).map(Out)
    }

    /// Writes the value without reading or dropping what was there (C
    /// memory may be uninitialised).
    pub(crate) fn set(self, v: T) {
        // SAFETY: non-NULL by construction, and valid and aligned for a
        // write of `T` per the contract of `new`/`optional`.
        unsafe { self.0.as_ptr().write(v) }
    }
}
