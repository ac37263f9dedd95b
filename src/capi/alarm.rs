//! The object's alarm: stored in the object's own database, so setting or
//! deleting it commits with the turn. Firing it is the runtime's job.

use super::args::Out;
use super::error::{AmberCode, AMBER_OK};
use super::handle::Ptr;
use super::object::{with_object, AmberObject};

/// Reads the alarm. When one is set, `*out_is_set` is true and `*out_ms`
/// holds its time in milliseconds since the Unix epoch; otherwise
/// `*out_is_set` is false and `*out_ms` is 0. Sees this turn's writes.
///
/// # Safety
/// `obj` is NULL or a live handle; `out_ms` and `out_is_set` are NULL or
/// valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn amber_alarm_get(
    obj: *mut AmberObject,
    out_ms: *mut u64,
    out_is_set: *mut bool,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let out_ms = unsafe { Out::new(out_ms, "out_ms") }?;
        // SAFETY: the caller's contract above.
        let out_is_set = unsafe { Out::new(out_is_set, "out_is_set") }?;
        let at = o.get_alarm_ms()?;
        out_ms.set(at.unwrap_or(0));
        out_is_set.set(at.is_some());
        Ok(AMBER_OK)
    })
}

/// Sets the alarm to `ms` milliseconds since the Unix epoch, replacing any
/// earlier one, as part of the current turn. A time in the past means
/// "fire at once". Times above INT64_MAX are `AMBER_ERR_INVALID_INPUT`.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_alarm_set(obj: *mut AmberObject, ms: u64) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        o.set_alarm_ms(ms)?;
        Ok(AMBER_OK)
    })
}

/// Deletes the alarm, as part of the current turn. Deleting an unset
/// alarm succeeds.
///
/// # Safety
/// `obj` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn amber_alarm_delete(obj: *mut AmberObject) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        o.delete_alarm()?;
        Ok(AMBER_OK)
    })
}
