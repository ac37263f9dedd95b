//! `AmberTicket`: a claim on a commit's durability, and completion
//! callbacks that run on amber's syncer (or, at remote durability,
//! shipper) threads.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::args::Out;
use super::error::{
    code_of, to_cstring, AmberCode, CError, ErrorSlot, AMBER_ERR_CLOSED, AMBER_OK, AMBER_PENDING,
};
use std::sync::Mutex;

use super::handle::{self, into_raw, Handle, Ptr, State};
use crate::durability::Ticket;
use crate::error::Error;

/// A durability ticket. Made by `amber_object_end_turn`,
/// `amber_object_sync` or `amber_ticket_clone`; freed by
/// `amber_ticket_free`. A ticket may move to any thread and may outlive
/// the object and store it came from. Used by one thread at a time (a
/// second thread gets `AMBER_ERR_BUSY`, including while the first waits);
/// clone it to wait from several threads.
pub struct AmberTicket {
    seq: u64,
    cell: Mutex<TicketState>,
}

pub(crate) struct TicketState {
    ticket: Ticket,
    slot: ErrorSlot,
}

impl State for TicketState {
    fn slot(&mut self) -> &mut ErrorSlot {
        &mut self.slot
    }
}

impl Handle for AmberTicket {
    type State = TicketState;
    fn cell(&self) -> &Mutex<TicketState> {
        &self.cell
    }
}

pub(crate) fn new_ticket(ticket: Ticket) -> *mut AmberTicket {
    into_raw(AmberTicket {
        seq: ticket.seq(),
        cell: Mutex::new(TicketState {
            ticket,
            slot: ErrorSlot::default(),
        }),
    })
}

/// Called once when a ticket settles.
///
/// - `user_data`: the pointer given to `amber_ticket_on_complete`.
/// - `code`: `AMBER_OK` once the commit is durable; otherwise the failure
///   (`AMBER_ERR_BROKEN` when the object broke first, `AMBER_ERR_CLOSED`
///   when the store shut down or the object went away before it settled).
/// - `seq`: the ticket's sequence number.
/// - `message`: NULL on success; otherwise the failure's message, borrowed
///   for the duration of the call only.
pub type AmberTicketCallback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, code: AmberCode, seq: u64, message: *const c_char),
>;

/// A registered callback. It fires exactly once: when the ticket settles,
/// or, if amber drops it unsettled, from its `Drop`.
struct Completion {
    cb: unsafe extern "C" fn(*mut c_void, AmberCode, u64, *const c_char),
    user_data: *mut c_void,
    seq: u64,
    fired: bool,
}

// SAFETY: sent to the syncer or shipper thread that settles the ticket; the
// header's contract for `amber_ticket_on_complete` makes the caller guarantee
// that the callback and `user_data` may be used from another thread.
unsafe impl Send for Completion {}

impl Completion {
    fn fire(mut self, res: Result<u64, Error>) {
        self.fired = true;
        match res {
            Ok(seq) => self.invoke(AMBER_OK, seq, None),
            Err(e) => self.invoke(code_of(e.kind()), self.seq, Some(e.message())),
        }
    }

    fn invoke(&self, code: AmberCode, seq: u64, message: Option<&str>) {
        let msg = message.map(to_cstring);
        let ptr = msg.as_ref().map_or(std::ptr::null(), |m| m.as_ptr());
        handle::as_callback(|| {
            // SAFETY: `cb` is the caller's non-NULL callback, called with its
            // documented arguments; `ptr` lives until it returns; an unwind
            // out of C through `extern "C"` aborts instead of crossing here.
            unsafe { (self.cb)(self.user_data, code, seq, ptr) }
        });
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.fired {
            self.fired = true;
            self.invoke(
                AMBER_ERR_CLOSED,
                self.seq,
                Some("the ticket's object went away before the commit settled"),
            );
        }
    }
}

/// The commit's sequence number (0 for a ticket on "nothing written yet",
/// which is durable at once). 0 for a NULL handle.
///
/// # Safety
/// `ticket` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_seq(ticket: *const AmberTicket) -> u64 {
    handle::guard(0, || {
        // SAFETY: the caller's contract above; `seq` never changes, so
        // reading it needs no claim on the handle.
        unsafe { ticket.as_ref() }.map_or(0, |t| t.seq)
    })
}

/// Checks the ticket without blocking: `AMBER_OK` once the commit is
/// durable (its sequence number goes to `out_seq`, which may be NULL),
/// `AMBER_PENDING` while it is not, or the failure that settled it
/// (`AMBER_ERR_BROKEN`: the commit will never be durable).
///
/// # Safety
/// `ticket` is NULL or a live handle; `out_seq` is NULL or valid for
/// writing one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_poll(
    ticket: *mut AmberTicket,
    out_seq: *mut u64,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::call(ticket, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_seq) };
        match st.ticket.poll_done() {
            None => Ok(AMBER_PENDING),
            Some(r) => {
                let seq = r?;
                if let Some(out) = out {
                    out.set(seq);
                }
                Ok(AMBER_OK)
            }
        }
    })
}

/// Blocks until the commit is durable, or at most `timeout_ms`
/// milliseconds (negative: no limit). `AMBER_OK` when durable (sequence
/// number to `out_seq`, which may be NULL); `AMBER_ERR_TIMEOUT` when time
/// ran out (the commit may still become durable: wait again); or the
/// failure that settled it. Do not call it from a ticket callback.
///
/// # Safety
/// `ticket` is NULL or a live handle; `out_seq` is NULL or valid for
/// writing one `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_wait(
    ticket: *mut AmberTicket,
    timeout_ms: i64,
    out_seq: *mut u64,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::call(ticket, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_seq) };
        let seq = if timeout_ms < 0 {
            st.ticket.wait()?
        } else {
            st.ticket
                .wait_timeout(Duration::from_millis(timeout_ms as u64))?
        };
        if let Some(out) = out {
            out.set(seq);
        }
        Ok(AMBER_OK)
    })
}

/// Registers `callback` to run exactly once, when the ticket settles.
///
/// Which thread runs it:
/// - if the ticket has already settled, the calling thread, before this
///   function returns;
/// - normally, at `AMBER_DURABILITY_LOCAL`, one of the store's syncer
///   threads (named `amber-sync-N`), right after the fsync that made the
///   commit durable;
/// - at `AMBER_DURABILITY_REMOTE`, one of the store's shipper threads
///   (named `amber-ship`), right after the upload that put the commit in
///   the bucket;
/// - if the object breaks first, the thread whose call broke it, inside
///   that call;
/// - if amber drops the registration unsettled (it never does while the
///   store runs; the store's shutdown settles every queued commit first),
///   the thread that dropped it, with `AMBER_ERR_CLOSED`.
///
/// What the callback may do: record the result, signal or enqueue work for
/// the runtime's own thread (a pipe, eventfd, condition variable, lock-free
/// queue), and call `amber_code_name`, `amber_ticket_seq`, `amber_ticket_poll`
/// and `amber_ticket_free` on tickets it owns. It must return quickly (it
/// delays the durability of other objects' commits), must not block on
/// amber (no `amber_ticket_wait`), must not use object handles (they belong
/// to the runtime's threads, and would answer `AMBER_ERR_BUSY` or reenter a
/// call in progress), must not free store or object handles (refused with
/// `AMBER_ERR_MISUSE`), and must not unwind (a C++ exception aborts).
///
/// `user_data` is passed back untouched; the caller owns it and keeps it
/// valid until the callback has run. The callback and `user_data` must be
/// safe to use from another thread. The ticket handle itself may be freed
/// before the callback runs. Returns `AMBER_ERR_NULL_POINTER` when
/// `callback` is NULL.
///
/// # Safety
/// `ticket` is NULL or a live handle; `callback` is NULL or a function
/// with the `AmberTicketCallback` signature, callable from any thread.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_on_complete(
    ticket: *mut AmberTicket,
    callback: AmberTicketCallback,
    user_data: *mut c_void,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::call(ticket, |st| {
        let cb = callback.ok_or_else(|| CError::null("callback"))?;
        let completion = Completion {
            cb,
            user_data,
            seq: st.ticket.seq(),
            fired: false,
        };
        st.ticket.on_complete(move |r| completion.fire(r));
        Ok(AMBER_OK)
    })
}

/// Makes a second handle on the same commit, for another thread or
/// another owner. Each handle is freed on its own.
///
/// # Safety
/// `ticket` is NULL or a live handle; `out_ticket` is NULL or valid for
/// writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_clone(
    ticket: *mut AmberTicket,
    out_ticket: *mut *mut AmberTicket,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::call(ticket, |st| {
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::new(out_ticket, "out_ticket") }?;
        out.set(new_ticket(st.ticket.clone()));
        Ok(AMBER_OK)
    })
}

/// The message of the last failed call on `ticket`, or "not an error".
///
/// Ownership: owned by the handle; valid until the next call with this
/// handle or its free. Never NULL.
///
/// # Safety
/// `ticket` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_errmsg(ticket: *const AmberTicket) -> *const c_char {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::errmsg(ticket)
}

/// Frees a ticket handle. NULL is a no-op. A callback registered through
/// it still runs. Returns `AMBER_ERR_BUSY` (freeing nothing) while another
/// thread uses the handle. May be called from a ticket callback.
///
/// # Safety
/// `ticket` is NULL or a live handle; after `AMBER_OK` it must not be used
/// again.
#[no_mangle]
pub unsafe extern "C" fn amber_ticket_free(ticket: *mut AmberTicket) -> AmberCode {
    // SAFETY: the caller's contract above.
    let ticket = unsafe { Ptr::new(ticket) };
    handle::free(ticket, false, drop)
}
