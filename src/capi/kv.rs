//! The KV API: get, put, delete and list.
//!
//! Keys are UTF-8 strings given as pointer and length (so they may hold
//! NULs); values are byte strings.

use std::ffi::c_char;

use super::args::{bytes, opt_utf8, utf8, Out};
use super::error::{
    AmberCode, CError, CResult, AMBER_ERR_INTERNAL, AMBER_ERR_INVALID_INPUT, AMBER_ERR_MISUSE,
    AMBER_ERR_NULL_POINTER, AMBER_OK,
};
use super::handle::{guard, into_raw, Ptr};
use super::object::{with_object, AmberObject};
use crate::object::{ListOptions, WriteOptions};

/// The write does not hold the output gate: the turn's ticket does not
/// wait for it (a failure to commit it still breaks the object).
pub const AMBER_WRITE_ALLOW_UNCONFIRMED: u32 = 1;
/// Do not keep the value in amber's cache once it is committed.
pub const AMBER_WRITE_NO_CACHE: u32 = 2;

/// A byte string amber allocated and the caller owns. Free it with
/// `amber_bytes_free`, never with `free()`. An empty value has NULL `data`.
#[repr(C)]
#[derive(Debug)]
pub struct AmberBytes {
    pub data: *mut u8,
    pub len: usize,
}

fn write_options(flags: u32) -> CResult<WriteOptions> {
    let known = AMBER_WRITE_ALLOW_UNCONFIRMED | AMBER_WRITE_NO_CACHE;
    if flags & !known != 0 {
        return Err(CError::new(
            AMBER_ERR_INVALID_INPUT,
            format!("unknown write flags {:#x}", flags & !known),
        ));
    }
    Ok(WriteOptions {
        allow_unconfirmed: flags & AMBER_WRITE_ALLOW_UNCONFIRMED != 0,
        no_cache: flags & AMBER_WRITE_NO_CACHE != 0,
    })
}

/// Reads `key`, seeing this turn's own writes. When the key exists,
/// `*out_found` is true and `*out_value` receives a copy of the value,
/// owned by the caller and freed with `amber_bytes_free`. When it does not,
/// `*out_found` is false and `*out_value` is `{NULL, 0}`.
///
/// `key`: `key_len` bytes of UTF-8, borrowed for the call.
/// `AMBER_ERR_LIMIT_EXCEEDED` for a key over the key limit.
///
/// # Safety
/// `obj` is NULL or a live handle; `key` is NULL or points to `key_len`
/// readable bytes; `out_value` and `out_found` are NULL or valid for one
/// write each.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_get(
    obj: *mut AmberObject,
    key: *const c_char,
    key_len: usize,
    out_value: *mut AmberBytes,
    out_found: *mut bool,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let key = unsafe { utf8(key, key_len, "key") }?;
        // SAFETY: the caller's contract above.
        let out_value = unsafe { Out::new(out_value, "out_value") }?;
        // SAFETY: the caller's contract above.
        let out_found = unsafe { Out::new(out_found, "out_found") }?;
        let v = o.get(key)?;
        out_found.set(v.is_some());
        out_value.set(into_bytes(v.unwrap_or_default()));
        Ok(AMBER_OK)
    })
}

fn into_bytes(v: Vec<u8>) -> AmberBytes {
    if v.is_empty() {
        return AmberBytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
    }
    let len = v.len();
    let data = Box::into_raw(v.into_boxed_slice()).cast::<u8>();
    AmberBytes { data, len }
}

/// Frees a value from `amber_kv_get` and resets `*bytes` to `{NULL, 0}`.
/// NULL, or a value already freed this way, is a no-op.
///
/// # Safety
/// `bytes` is NULL or points to an `AmberBytes` filled by amber and not
/// changed since.
#[no_mangle]
pub unsafe extern "C" fn amber_bytes_free(bytes: *mut AmberBytes) {
    guard((), || {
        // SAFETY: the caller's contract above.
        let Some(b) = (unsafe { bytes.as_mut() }) else {
            return;
        };
        if !b.data.is_null() && b.len > 0 {
            let slice = std::ptr::slice_from_raw_parts_mut(b.data, b.len);
            // SAFETY: `data`/`len` came from `Box::into_raw` of a boxed
            // slice of exactly `len` bytes in `into_bytes`, unchanged since
            // (caller's contract), and are reset below so it runs once.
            drop(unsafe { Box::from_raw(slice) });
        }
        b.data = std::ptr::null_mut();
        b.len = 0;
    })
}

/// Writes `key` = `value` in the current turn. `flags` is a bitwise OR of
/// `AMBER_WRITE_*`, or 0. `AMBER_ERR_LIMIT_EXCEEDED` for a key or value
/// over its limit.
///
/// `key` (`key_len` bytes of UTF-8) and `value` (`value_len` bytes; NULL
/// when 0) are borrowed for the call: amber copies them.
///
/// # Safety
/// `obj` is NULL or a live handle; `key` and `value` are NULL or point to
/// `key_len` and `value_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_put(
    obj: *mut AmberObject,
    key: *const c_char,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    flags: u32,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let key = unsafe { utf8(key, key_len, "key") }?;
        // SAFETY: the caller's contract above.
        let value = unsafe { bytes(value, value_len, "value") }?;
        o.put_with(key, value, write_options(flags)?)?;
        Ok(AMBER_OK)
    })
}

/// Deletes `key` in the current turn. `out_existed` (may be NULL) says
/// whether it existed. `flags` as for `amber_kv_put`.
///
/// # Safety
/// `obj` is NULL or a live handle; `key` is NULL or points to `key_len`
/// readable bytes; `out_existed` is NULL or valid for one write.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_delete(
    obj: *mut AmberObject,
    key: *const c_char,
    key_len: usize,
    flags: u32,
    out_existed: *mut bool,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let key = unsafe { utf8(key, key_len, "key") }?;
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_existed) };
        let existed = o.delete_with(key, write_options(flags)?)?;
        if let Some(out) = out {
            out.set(existed);
        }
        Ok(AMBER_OK)
    })
}

/// Which keys `amber_kv_list` returns, in UTF-8 byte order. Zero-initialise
/// it (`AmberListOptions opts = {0};`) and set what you need. Each string
/// is a pointer and a length; a NULL pointer means "not set", so an empty
/// string is a non-NULL pointer with length 0. All are borrowed for the
/// call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AmberListOptions {
    /// First key, inclusive.
    pub start: *const c_char,
    pub start_len: usize,
    /// Keys strictly after this one. With `start` too, the later wins.
    pub start_after: *const c_char,
    pub start_after_len: usize,
    /// Last key, exclusive.
    pub end: *const c_char,
    pub end_len: usize,
    /// Only keys with this prefix.
    pub prefix: *const c_char,
    pub prefix_len: usize,
    /// Descending order.
    pub reverse: bool,
    /// At most this many entries; 0 means no limit.
    pub limit: u64,
}

/// A list of KV entries. Made by `amber_kv_list`, freed by
/// `amber_kv_list_free`. Read-only, so any number of threads may read it
/// at once. Its accessors fail only on NULL pointers and indexes out of
/// range, which they report by code alone.
pub struct AmberKvList {
    entries: Vec<Entry>,
}

struct Entry {
    /// The key's bytes followed by one NUL.
    key: Box<[u8]>,
    value: Box<[u8]>,
}

/// One entry of an `AmberKvList`. Both pointers are owned by the list and
/// valid until `amber_kv_list_free`. The key is UTF-8 followed by a NUL
/// (`key_len` does not count it); an empty value has NULL `value`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct AmberKvEntry {
    pub key: *const c_char,
    pub key_len: usize,
    pub value: *const u8,
    pub value_len: usize,
}

/// Makes a list handle of (key, value) pairs.
pub(crate) fn new_list(entries: Vec<(String, Vec<u8>)>) -> *mut AmberKvList {
    let entries = entries
        .into_iter()
        .map(|(k, v)| {
            let mut key = k.into_bytes();
            key.push(0);
            Entry {
                key: key.into_boxed_slice(),
                value: v.into_boxed_slice(),
            }
        })
        .collect();
    into_raw(AmberKvList { entries })
}

/// Converts C list options.
///
/// # Safety
/// Every non-NULL string pointer in `o` points to its length in bytes.
unsafe fn list_options(o: &AmberListOptions) -> CResult<ListOptions> {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    // SAFETY: each pointer/length pair is forwarded from the caller.
    let start = unsafe { opt_utf8(o.start, o.start_len, "start") }?;
    // SAFETY: as above.
    let start_after = unsafe { opt_utf8(o.start_after, o.start_after_len, "start_after") }?;
    // SAFETY: as above.
    let end = unsafe { opt_utf8(o.end, o.end_len, "end") }?;
    // SAFETY: as above.
    let prefix = unsafe { opt_utf8(o.prefix, o.prefix_len, "prefix") }?;
    Ok(ListOptions {
        start: owned(start),
        start_after: owned(start_after),
        end: owned(end),
        prefix: owned(prefix),
        reverse: o.reverse,
        limit: match o.limit {
            0 => None,
            n => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        },
    })
}

/// Lists entries in key order, seeing this turn's writes. `options` may be
/// NULL for every entry. `out_list` receives a new list owned by the
/// caller and freed with `amber_kv_list_free`.
///
/// # Safety
/// `obj` is NULL or a live handle; `options` is NULL or points to an
/// `AmberListOptions` whose strings follow its contract; `out_list` is
/// NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_list(
    obj: *mut AmberObject,
    options: *const AmberListOptions,
    out_list: *mut *mut AmberKvList,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let opts = match unsafe { options.as_ref() } {
            // SAFETY: the caller's contract above.
            Some(c) => unsafe { list_options(c) }?,
            None => ListOptions::default(),
        };
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_list, "out_list") }?;
        out.set(new_list(o.list(&opts)?));
        Ok(AMBER_OK)
    })
}

/// Number of entries in `list` (0 for NULL).
///
/// # Safety
/// `list` is NULL or a live list.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_list_len(list: *const AmberKvList) -> usize {
    guard(0, || {
        // SAFETY: the caller's contract above.
        unsafe { list.as_ref() }.map_or(0, |l| l.entries.len())
    })
}

/// Reads entry `index` of `list` into `out_entry`. `AMBER_ERR_MISUSE` when
/// `index` is out of range.
///
/// # Safety
/// `list` is NULL or a live list; `out_entry` is NULL or valid for writing
/// one `AmberKvEntry`.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_list_entry(
    list: *const AmberKvList,
    index: usize,
    out_entry: *mut AmberKvEntry,
) -> AmberCode {
    guard(AMBER_ERR_INTERNAL, || {
        // SAFETY: the caller's contract above.
        let Some(l) = (unsafe { list.as_ref() }) else {
            return AMBER_ERR_NULL_POINTER;
        };
        // SAFETY: the caller's contract above.
        let Ok(out) = (unsafe { Out::new(out_entry, "out_entry") }) else {
            return AMBER_ERR_NULL_POINTER;
        };
        let Some(Entry { key: k, value: v }) = l.entries.get(index) else {
            return AMBER_ERR_MISUSE;
        };
        out.set(AmberKvEntry {
            key: k.as_ptr().cast(),
            key_len: k.len() - 1,
            value: if v.is_empty() {
                std::ptr::null()
            } else {
                v.as_ptr()
            },
            value_len: v.len(),
        });
        AMBER_OK
    })
}

/// Frees a list and every entry it handed out. NULL is a no-op.
///
/// # Safety
/// `list` is NULL or a live list, not in use by another thread; it must
/// not be used again.
#[no_mangle]
pub unsafe extern "C" fn amber_kv_list_free(list: *mut AmberKvList) {
    guard((), || {
        if !list.is_null() {
            // SAFETY: made by `Box::into_raw` in `amber_kv_list`, and the
            // caller gives up the pointer with this call.
            drop(unsafe { Box::from_raw(list) });
        }
    })
}
