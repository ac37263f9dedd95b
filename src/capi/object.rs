//! `AmberObject`: an open object, and its turns.
//!
//! A turn is amber's unit of atomicity: every write between two ends of a
//! turn commits as one transaction. `amber_object_begin_turn` also binds
//! the handle to the calling thread until `amber_object_end_turn`, so a
//! runtime that hands an object from thread to thread between turns gets
//! `AMBER_ERR_BUSY`, not a race, if two threads ever overlap.

use std::ffi::{c_char, c_int, CString};

use super::args::{utf8, Out};
use super::error::{to_cstring, AmberCode, CError, CResult, ErrorSlot, AMBER_OK};
use std::sync::{Mutex, PoisonError};

use super::handle::{self, into_raw, Handle, Ptr, State};
use super::store::AmberStore;
use super::ticket::{new_ticket, AmberTicket};
use crate::object::Object;
use crate::store::BucketHistory;

/// An open object. Made by `amber_store_open_object`, freed by
/// `amber_object_free`. Used by one thread at a time: a call while another
/// thread is inside a call on it, or inside a turn it began, returns
/// `AMBER_ERR_BUSY`.
pub struct AmberObject {
    name: CString,
    cell: Mutex<ObjectState>,
}

pub(crate) struct ObjectState {
    pub(super) object: Option<Object>,
    /// The thread that began the current turn, if one did (its
    /// `thread_token`).
    pub(super) turn_owner: Option<usize>,
    slot: ErrorSlot,
}

impl ObjectState {
    /// The object, or `AMBER_ERR_CLOSED` once `amber_object_close` ran.
    pub(crate) fn object(&mut self) -> CResult<&mut Object> {
        self.object.as_mut().ok_or_else(|| CError::closed("object"))
    }
}

impl State for ObjectState {
    fn slot(&mut self) -> &mut ErrorSlot {
        &mut self.slot
    }

    fn admits_current_thread(&self) -> bool {
        self.turn_owner
            .is_none_or(|owner| owner == handle::thread_token())
    }

    fn after_panic(&mut self) {
        // A panic may have left the object half way through a change:
        // close it (SQLite rolls back the open turn) rather than trust it.
        self.turn_owner = None;
        self.object = None;
    }
}

impl Handle for AmberObject {
    type State = ObjectState;
    fn cell(&self) -> &Mutex<ObjectState> {
        &self.cell
    }
}

/// Runs `f` on the open object behind `obj`.
pub(crate) fn with_object(
    obj: Ptr<AmberObject>,
    f: impl FnOnce(&mut Object) -> CResult<AmberCode>,
) -> AmberCode {
    handle::call(obj, |st| f(st.object()?))
}

/// Opens the object called `name`, creating it on first use. At most one
/// handle per object exists at a time, across processes: a second open
/// fails with `AMBER_ERR_LOCKED` until the first handle is closed or freed.
///
/// `name`: `name_len` bytes of UTF-8 (NULs allowed, at most 1024 bytes),
/// borrowed for the call only. `out_object` receives a new handle that the
/// caller owns and frees with `amber_object_free`; it is left unchanged on
/// failure. A failure's message is read with `amber_store_errmsg(store)`.
///
/// # Safety
/// `store` is NULL or a live handle; `name` is NULL or points to
/// `name_len` readable bytes; `out_object` is NULL or valid for writing
/// one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_store_open_object(
    store: *const AmberStore,
    name: *const c_char,
    name_len: usize,
    out_object: *mut *mut AmberObject,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::call(store, |st| {
        // SAFETY: the caller's contract above.
        let name = unsafe { utf8(name, name_len, "name") }?;
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_object, "out_object") }?;
        let object = st.store.open_object(name)?;
        out.set(into_raw(AmberObject {
            name: to_cstring(name),
            cell: Mutex::new(ObjectState {
                object: Some(object),
                turn_owner: None,
                slot: ErrorSlot::default(),
            }),
        }));
        Ok(AMBER_OK)
    })
}

/// Deletes the object called `name` for good: its local files at once,
/// its bucket history once the retention window has passed, or at once
/// when `purge` is non-zero. A later open of the name starts a fresh
/// object. `*out_deleted` (if not NULL) is set to 1 when there was such an
/// object, 0 when there was not. Fails with `AMBER_ERR_LOCKED` while the
/// object is open.
///
/// # Safety
/// `store` is NULL or a live handle; `name` is NULL or points to
/// `name_len` readable bytes; `out_deleted` is NULL or valid for writing
/// one `int`.
#[no_mangle]
pub unsafe extern "C" fn amber_store_delete_object(
    store: *const AmberStore,
    name: *const c_char,
    name_len: usize,
    purge: c_int,
    out_deleted: *mut c_int,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::call(store, |st| {
        // SAFETY: the caller's contract above.
        let name = unsafe { utf8(name, name_len, "name") }?;
        let history = if purge != 0 {
            BucketHistory::Purge
        } else {
            BucketHistory::Keep
        };
        let deleted = st.store.delete_object(name, history)?;
        if !out_deleted.is_null() {
            // SAFETY: non-null, and valid for one write by the contract.
            unsafe { *out_deleted = c_int::from(deleted) };
        }
        Ok(AMBER_OK)
    })
}

/// The object's name, NUL-terminated (a NUL inside the name shows as
/// U+FFFD). Owned by the handle; valid until `amber_object_free`. NULL
/// only for a NULL handle.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_object_name(obj: *const AmberObject) -> *const c_char {
    handle::guard(std::ptr::null(), || {
        // SAFETY: the caller's contract above. The name never changes, so
        // reading it needs no claim on the handle.
        match unsafe { obj.as_ref() } {
            Some(o) => o.name.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// Begins a turn and binds the handle to the calling thread until
/// `amber_object_end_turn`: calls from any other thread get
/// `AMBER_ERR_BUSY` meanwhile. Beginning is optional (writes outside one
/// join an implicit turn that `amber_object_end_turn` commits), but it is
/// how a runtime states "this thread owns the object now". A second begin
/// before the end is `AMBER_ERR_MISUSE`.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_object_begin_turn(obj: *mut AmberObject) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::call(obj, |st| {
        st.object()?;
        if st.turn_owner.is_some() {
            return Err(CError::misuse(
                "a turn is already begun on this handle; end it first",
            ));
        }
        st.turn_owner = Some(handle::thread_token());
        Ok(AMBER_OK)
    })
}

fn finish_turn(
    st: &mut ObjectState,
    out: Option<Out<*mut AmberTicket>>,
    all: bool,
) -> CResult<AmberCode> {
    // The turn is over whatever happens: a failed commit breaks the
    // object, and no thread should keep owning a broken handle.
    st.turn_owner = None;
    let o = st.object()?;
    let ticket = if all { o.sync()? } else { o.end_turn()? };
    if let Some(out) = out {
        out.set(new_ticket(ticket));
    }
    Ok(AMBER_OK)
}

/// Ends the turn: commits its writes (SQL, KV, alarm) as one transaction
/// and releases the thread binding of `amber_object_begin_turn`.
///
/// `out_ticket` (may be NULL to discard it) receives a new ticket handle,
/// owned by the caller and freed with `amber_ticket_free`. The ticket resolves once this commit and every
/// earlier confirmed one is durable: hold the turn's outgoing messages
/// until then (the output gate). A turn that wrote nothing gets the ticket
/// of the last commit. A failed commit returns `AMBER_ERR_BROKEN`: the
/// turn is lost and every later call fails until the object is reopened.
///
/// # Safety
/// `obj` is NULL or a live handle; `out_ticket` is NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_object_end_turn(
    obj: *mut AmberObject,
    out_ticket: *mut *mut AmberTicket,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::call(obj, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_ticket) };
        finish_turn(st, out, false)
    })
}

/// Like `amber_object_end_turn`, but the ticket also covers writes made
/// with `AMBER_WRITE_ALLOW_UNCONFIRMED`: it resolves once everything
/// written so far is durable.
///
/// # Safety
/// As for `amber_object_end_turn`.
#[no_mangle]
pub unsafe extern "C" fn amber_object_sync(
    obj: *mut AmberObject,
    out_ticket: *mut *mut AmberTicket,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::call(obj, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_ticket) };
        finish_turn(st, out, true)
    })
}

/// Closes the object cleanly: ends the turn, waits until every commit is
/// durable, and releases the object so it can be opened again. The handle
/// stays valid (for `amber_object_errmsg`); every later call on it returns
/// `AMBER_ERR_CLOSED`, and it must still be freed with `amber_object_free`.
/// The object is released even when this fails.
///
/// `out_seq` (may be NULL) receives the last durable sequence number.
///
/// # Safety
/// `obj` is NULL or a live handle; `out_seq` is NULL or valid for writing
/// one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn amber_object_close(obj: *mut AmberObject, out_seq: *mut u64) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::call(obj, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_seq) };
        st.turn_owner = None;
        let object = st.object.take().ok_or_else(|| CError::closed("object"))?;
        let seq = object.close()?;
        if let Some(out) = out {
            out.set(seq);
        }
        Ok(AMBER_OK)
    })
}

/// The sequence number of the object's last commit (0 before the first).
///
/// # Safety
/// `obj` is NULL or a live handle; `out_seq` is NULL or valid for writing
/// one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn amber_object_seq(obj: *mut AmberObject, out_seq: *mut u64) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_seq, "out_seq") }?;
        out.set(o.seq());
        Ok(AMBER_OK)
    })
}

/// The object's live size in bytes: (page_count - freelist_count) x
/// page_size.
///
/// # Safety
/// `obj` is NULL or a live handle; `out_bytes` is NULL or valid for
/// writing one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn amber_object_database_size(
    obj: *mut AmberObject,
    out_bytes: *mut u64,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_bytes, "out_bytes") }?;
        out.set(o.database_size()?);
        Ok(AMBER_OK)
    })
}

/// Wipes the object: every KV entry, every user table, index, view and
/// trigger, and the alarm. Part of the turn like any other write.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_object_delete_all(obj: *mut AmberObject) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        o.delete_all()?;
        Ok(AMBER_OK)
    })
}

/// The message of the last failed call on `obj`, or "not an error".
///
/// Ownership: owned by the handle; valid until the next call with this
/// handle or its free. Never NULL.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_object_errmsg(obj: *const AmberObject) -> *const c_char {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::errmsg(obj)
}

/// Frees an object handle. NULL is a no-op. If the object is still open,
/// it is released without ending the turn: the turn's uncommitted writes
/// are discarded (commits already made stay, and still become durable).
/// Use `amber_object_close` first for a clean close.
///
/// Returns `AMBER_ERR_BUSY` (freeing nothing) while another thread uses the
/// handle or owns its turn, and `AMBER_ERR_MISUSE` from a ticket callback.
///
/// # Safety
/// `obj` is NULL or a live handle; after `AMBER_OK` it must not be used
/// again, and pointers it handed out (its name, its message) are invalid.
#[no_mangle]
pub unsafe extern "C" fn amber_object_free(obj: *mut AmberObject) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::free(obj, true, |h| {
        drop(h.cell.into_inner().unwrap_or_else(PoisonError::into_inner))
    })
}
