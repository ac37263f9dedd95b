//! What every handle shares: an in-use flag that turns concurrent use into
//! `AMBER_ERR_BUSY`, an error slot, and the wrapper that runs each entry
//! point under `catch_unwind`.

use std::cell::Cell;
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard, TryLockError};

use super::error::{
    AmberCode, CError, CResult, ErrorSlot, AMBER_ERR_BUSY, AMBER_ERR_INTERNAL, AMBER_ERR_MISUSE,
    AMBER_ERR_NULL_POINTER, AMBER_OK, BUSY_MESSAGE, NULL_HANDLE_MESSAGE,
};

/// Claims a handle's state for this thread without blocking: `None` if
/// another thread holds it, which the C API reports as `AMBER_ERR_BUSY`.
/// Poisoning is ignored: a panic inside a call is caught with the guard
/// held and `State::after_panic` has already put the state right.
pub(crate) fn try_claim<T>(cell: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match cell.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::WouldBlock) => None,
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
    }
}

/// The state behind a handle's in-use flag.
pub(crate) trait State {
    fn slot(&mut self) -> &mut ErrorSlot;

    /// Whether the calling thread may use the handle now. An object in a
    /// turn begun by another thread says no.
    fn admits_current_thread(&self) -> bool {
        true
    }

    /// Called after a panic was caught inside a call, with the flag held.
    fn after_panic(&mut self) {}
}

/// A handle type: a box the C side holds a pointer to.
pub(crate) trait Handle {
    type State: State;
    fn cell(&self) -> &Mutex<Self::State>;
}

/// A handle pointer from C that the caller vouched for.
pub(crate) struct Ptr<H>(*const H);

impl<H> Clone for Ptr<H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H> Copy for Ptr<H> {}

impl<H> Ptr<H> {
    /// # Safety
    /// `p` is NULL or a live handle of type `H` made by this library (with
    /// `Box::into_raw`), and stays live while the `Ptr` is used, except
    /// that `free` may end its life.
    pub(crate) unsafe fn new(p: *const H) -> Ptr<H> {
        Ptr(p)
    }

    pub(crate) fn get(&self) -> Option<&H> {
        // SAFETY: NULL or live, per the contract of `new`.
        unsafe { self.0.as_ref() }
    }
}

/// Runs `f` with a panic barrier. A panic becomes `on_panic`.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(on_panic)
}

/// The body of nearly every entry point: checks the handle, claims it for
/// this thread, runs `f`, records the outcome in the handle's error slot
/// and returns its code. Panics inside `f` become `AMBER_ERR_INTERNAL`.
pub(crate) fn call<H: Handle>(
    handle: Ptr<H>,
    f: impl FnOnce(&mut H::State) -> CResult<AmberCode>,
) -> AmberCode {
    guard(AMBER_ERR_INTERNAL, || {
        let Some(h) = handle.get() else {
            return AMBER_ERR_NULL_POINTER;
        };
        let Some(mut state) = try_claim(h.cell()) else {
            return AMBER_ERR_BUSY;
        };
        if !state.admits_current_thread() {
            return AMBER_ERR_BUSY;
        }
        let res = match catch_unwind(AssertUnwindSafe(|| f(&mut state))) {
            Ok(res) => res,
            Err(payload) => {
                let err = CError::panic(&*payload);
                // Dropping what the panic left behind may panic too; the
                // outer guard catches that, and the flag is released by
                // the guard's drop either way.
                state.after_panic();
                Err(err)
            }
        };
        state.slot().record(res)
    })
}

/// The message of the last failed call on `handle`, for `amber_*_errmsg`.
pub(crate) fn errmsg<H: Handle>(handle: Ptr<H>) -> *const c_char {
    guard(BUSY_MESSAGE.as_ptr(), || {
        let Some(h) = handle.get() else {
            return NULL_HANDLE_MESSAGE.as_ptr();
        };
        match try_claim(h.cell()) {
            // The pointer outlives the guard: it points into the slot's
            // CString, which only the next call on this handle replaces.
            Some(mut state) => state.slot().message_ptr(),
            None => BUSY_MESSAGE.as_ptr(),
        }
    })
}

/// Frees a handle made by `Box::into_raw`, refusing while another thread
/// uses it. `finish` consumes what was in the box, with the panic barrier.
/// With `joins_threads`, freeing from a ticket callback is refused:
/// dropping the last reference to a store joins its syncer threads, and
/// the syncer thread running the callback cannot join itself.
/// After `AMBER_OK` the handle is gone.
pub(crate) fn free<H: Handle>(
    handle: Ptr<H>,
    joins_threads: bool,
    finish: impl FnOnce(H),
) -> AmberCode {
    guard(AMBER_ERR_INTERNAL, || {
        let Some(h) = handle.get() else {
            return AMBER_OK;
        };
        if joins_threads && in_callback() {
            return AMBER_ERR_MISUSE;
        }
        let Some(state) = try_claim(h.cell()) else {
            return AMBER_ERR_BUSY;
        };
        if !state.admits_current_thread() {
            return AMBER_ERR_BUSY;
        }
        // Keep the flag set until the memory is gone, so a racing call
        // from another thread sees BUSY rather than a half-freed handle.
        std::mem::forget(state);
        // SAFETY: made by `Box::into_raw` (the contract of `Ptr::new`),
        // claimed by this thread just above, and the caller gives up the
        // pointer with this call.
        let boxed = unsafe { Box::from_raw(handle.0.cast_mut()) };
        finish(*boxed);
        AMBER_OK
    })
}

thread_local! {
    /// Set while this thread runs a ticket callback.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// Its address names the thread (see `thread_token`).
    static TOKEN: u8 = const { 0 };
}

/// True while the calling thread is inside a ticket callback.
pub(crate) fn in_callback() -> bool {
    IN_CALLBACK.with(Cell::get)
}

/// Runs `f` (which calls a C ticket callback) with `in_callback` set.
pub(crate) fn as_callback(f: impl FnOnce()) {
    let was = IN_CALLBACK.with(|c| c.replace(true));
    f();
    IN_CALLBACK.with(|c| c.set(was));
}

/// A number that tells the calling thread from every other live thread:
/// the address of a thread-local. Unlike `std::thread::current()`, it
/// allocates nothing on threads the C side created, so it leaves nothing
/// behind for leak checkers.
pub(crate) fn thread_token() -> usize {
    TOKEN.with(|t| std::ptr::from_ref(t) as usize)
}

/// Puts a new handle in a box and gives C the pointer.
pub(crate) fn into_raw<H>(h: H) -> *mut H {
    Box::into_raw(Box::new(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::error::{AMBER_ERR_INTERNAL, AMBER_OK};

    #[derive(Default)]
    struct Dummy {
        slot: ErrorSlot,
        cleaned_up: bool,
    }

    impl State for Dummy {
        fn slot(&mut self) -> &mut ErrorSlot {
            &mut self.slot
        }
        fn after_panic(&mut self) {
            self.cleaned_up = true;
        }
    }

    struct DummyHandle(Mutex<Dummy>);

    impl Handle for DummyHandle {
        type State = Dummy;
        fn cell(&self) -> &Mutex<Dummy> {
            &self.0
        }
    }

    fn message(h: &DummyHandle) -> String {
        // SAFETY: `h` is a live handle for the whole call.
        let p = errmsg(unsafe { Ptr::new(h) });
        // SAFETY: errmsg returns a NUL-terminated string that lives until
        // the next call on the handle; it is copied at once.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_inside_a_call_becomes_an_internal_error_and_releases_the_handle() {
        let h = DummyHandle(Mutex::new(Dummy::default()));
        // SAFETY: `h` outlives every use of the pointer.
        let p = unsafe { Ptr::new(&h) };
        let code = call(p, |_| -> CResult<AmberCode> { panic!("boom") });
        assert_eq!(code, AMBER_ERR_INTERNAL);
        assert!(message(&h).contains("boom"), "{}", message(&h));
        // The flag was released and the state cleaned up.
        assert_eq!(
            call(p, |st| {
                assert!(st.cleaned_up);
                Ok(AMBER_OK)
            }),
            AMBER_OK
        );
        assert_eq!(message(&h), "not an error");
    }

    #[test]
    fn a_second_claim_is_refused_until_the_first_ends() {
        let h = DummyHandle(Mutex::new(Dummy::default()));
        // SAFETY: `h` outlives every use of the pointer.
        let p = unsafe { Ptr::new(&h) };
        let inner = call(p, |_| Ok(call(p, |_| Ok(AMBER_OK))));
        assert_eq!(inner, AMBER_ERR_BUSY);
        assert_eq!(call(p, |_| Ok(AMBER_OK)), AMBER_OK);
        // SAFETY: NULL is always accepted.
        let null = unsafe { Ptr::<DummyHandle>::new(std::ptr::null()) };
        assert_eq!(call(null, |_| Ok(AMBER_OK)), AMBER_ERR_NULL_POINTER);
    }
}
