//! `AmberStore`: an open store.

use std::ffi::{c_char, CString};

use super::args::Out;
use super::config::AmberConfig;
use super::error::{AmberCode, ErrorSlot, AMBER_OK};
use std::sync::Mutex;

use super::handle::{self, into_raw, Handle, Ptr, State};
use super::kv::{new_list, AmberKvList};
use crate::store::Store;

/// An open store. Made by `amber_store_open` or `amber_store_clone`, freed
/// by `amber_store_free`. Used by one thread at a time; give each thread
/// its own handle with `amber_store_clone`.
pub struct AmberStore {
    cell: Mutex<StoreState>,
}

pub(crate) struct StoreState {
    pub(crate) store: Store,
    /// Text a successful call hands out by pointer (a partial restore's
    /// damage, verify's problems); replaced by the next PITR call.
    pub(crate) detail: Option<CString>,
    slot: ErrorSlot,
}

impl State for StoreState {
    fn slot(&mut self) -> &mut ErrorSlot {
        &mut self.slot
    }
}

impl Handle for AmberStore {
    type State = StoreState;
    fn cell(&self) -> &Mutex<StoreState> {
        &self.cell
    }
}

fn new_handle(store: Store) -> *mut AmberStore {
    into_raw(AmberStore {
        cell: Mutex::new(StoreState {
            store,
            detail: None,
            slot: ErrorSlot::default(),
        }),
    })
}

/// Opens the store described by `config`, creating its data directory if
/// needed, and starts its syncer threads and, unless the bucket is
/// disabled, its shipper threads. A bucket that cannot be opened, or
/// `AMBER_DURABILITY_REMOTE` without a bucket, fails here
/// (`AMBER_ERR_INVALID_INPUT` or `AMBER_ERR_IO`).
///
/// `config` is borrowed for the call only; free it whenever you like.
/// `out_store` receives a new handle that the caller owns and frees with
/// `amber_store_free`; it is left unchanged on failure. A failure's
/// message is read with `amber_config_errmsg(config)`.
///
/// # Safety
/// `config` is NULL or a live handle; `out_store` is NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_store_open(
    config: *mut AmberConfig,
    out_store: *mut *mut AmberStore,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_store, "out_store") }?;
        let store = Store::open(st.config.clone())?;
        out.set(new_handle(store));
        Ok(AMBER_OK)
    })
}

/// Makes a second handle to the same store, for another thread. Each
/// handle is freed on its own; the store stays open while any handle or
/// object handle made from it is alive.
///
/// # Safety
/// `store` is NULL or a live handle; `out_store` is NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_store_clone(
    store: *const AmberStore,
    out_store: *mut *mut AmberStore,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::call(store, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_store, "out_store") }?;
        out.set(new_handle(st.store.clone()));
        Ok(AMBER_OK)
    })
}

/// Lists every object in the store, sorted by id, as an `AmberKvList`
/// whose keys are the objects' names and whose values are their ids (64
/// lowercase hex characters). A runtime uses it at startup, for example to
/// find the objects whose alarms it must schedule. `out_list` receives a
/// new list owned by the caller and freed with `amber_kv_list_free`.
///
/// # Safety
/// `store` is NULL or a live handle; `out_list` is NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_store_list_objects(
    store: *const AmberStore,
    out_list: *mut *mut AmberKvList,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::call(store, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_list, "out_list") }?;
        let objects = st
            .store
            .list_objects()?
            .into_iter()
            .map(|o| (o.name, o.id.to_hex().into_bytes()))
            .collect();
        out.set(new_list(objects));
        Ok(AMBER_OK)
    })
}

/// The message of the last failed call on `store` (for example a failed
/// `amber_store_open_object`), or "not an error".
///
/// Ownership: owned by the handle; valid until the next call with this
/// handle or its free. Never NULL.
///
/// # Safety
/// `store` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_store_errmsg(store: *const AmberStore) -> *const c_char {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::errmsg(store)
}

/// Frees a store handle. NULL is a no-op.
///
/// Object handles keep the store alive: its syncer threads stop, after
/// finishing every queued fsync, when the last store handle and the last
/// object handle made from it are freed; that last free blocks until they
/// have stopped, and until uploads in flight to the bucket have landed
/// (at most about 30 s). Returns `AMBER_ERR_BUSY` (freeing nothing) while another
/// thread uses the handle, and `AMBER_ERR_MISUSE` when called from a
/// ticket callback (a syncer thread cannot wait for itself to stop).
///
/// # Safety
/// `store` is NULL or a live handle; after `AMBER_OK` it must not be used
/// again.
#[no_mangle]
pub unsafe extern "C" fn amber_store_free(store: *mut AmberStore) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    handle::free(store, true, drop)
}
