//! Point-in-time recovery: bookmarks, restore into a file, restore of a
//! live object on its next open, and verification of an object's history
//! in the bucket.
//!
//! Bookmarks cross the boundary as text, the same 42 characters the CLI
//! prints (`<epoch 16 hex>-<seq 16 hex>-<check 8 hex>`): amber writes them
//! into caller buffers of `AMBER_BOOKMARK_SIZE` bytes and reads them as
//! NUL-terminated strings, so a runtime can store, log and show them as
//! they are.

use std::ffi::{c_char, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::args::{c_bytes, utf8, Out};
use super::error::{
    to_cstring, AmberCode, CError, CResult, AMBER_ERR_BAD_BOOKMARK, AMBER_ERR_BUFFER_TOO_SMALL,
    AMBER_ERR_INVALID_INPUT, AMBER_OK,
};
use super::handle::{self, Ptr};
use super::object::{with_object, AmberObject};
use super::store::{AmberStore, StoreState};
use crate::pitr::keys::BOOKMARK_LEN;
use crate::pitr::{Bookmark, RestoreOptions, RestoreReport, RestoreTarget};

/// Bytes a bookmark takes in a caller buffer: its 42 characters and a
/// terminating NUL. Every function that writes a bookmark needs this much.
pub const AMBER_BOOKMARK_SIZE: usize = 43;

const _: () = assert!(AMBER_BOOKMARK_SIZE == BOOKMARK_LEN + 1);

/// Restore to the newest commit the bucket holds.
pub const AMBER_RESTORE_LATEST: i32 = 0;
/// Restore to exactly the commit `AmberRestoreTarget.bookmark` names.
pub const AMBER_RESTORE_BOOKMARK: i32 = 1;
/// Restore to the last commit at or before `AmberRestoreTarget.time_ms`.
pub const AMBER_RESTORE_TIME: i32 = 2;

/// What `amber_store_restore` restores to. Build one with
/// `amber_restore_latest()`, `amber_restore_bookmark(b)` or
/// `amber_restore_time(ms)` (inline helpers at the end of this header).
#[repr(C)]
pub struct AmberRestoreTarget {
    /// `AMBER_RESTORE_LATEST`, `AMBER_RESTORE_BOOKMARK` or
    /// `AMBER_RESTORE_TIME`.
    pub kind: i32,
    /// With `AMBER_RESTORE_BOOKMARK`: a NUL-terminated bookmark, borrowed
    /// for the call only. Ignored otherwise.
    pub bookmark: *const c_char,
    /// With `AMBER_RESTORE_TIME`: milliseconds since the Unix epoch.
    /// Ignored otherwise.
    pub time_ms: u64,
}

/// What `amber_store_restore` produced. Written only on success.
#[repr(C)]
pub struct AmberRestoreReport {
    /// The commit the file holds, NUL-terminated.
    pub bookmark: [c_char; AMBER_BOOKMARK_SIZE],
    /// The commit asked for (the target resolved to a bookmark). Differs
    /// from `bookmark` only when `partial`.
    pub target: [c_char; AMBER_BOOKMARK_SIZE],
    /// When the commit in the file was made, in ms since the Unix epoch.
    pub commit_time_ms: u64,
    /// The history was damaged and `allow_partial` restored up to the
    /// last consistent commit instead of failing.
    pub partial: bool,
    /// When `partial`, why the restore stopped early; NULL otherwise.
    /// Owned by the store handle; valid until the next call with it or
    /// its free.
    pub damage: *const c_char,
    /// Bytes read from the bucket.
    pub bytes_fetched: u64,
    /// Commits applied on top of the snapshot the restore started from.
    pub records_applied: u64,
}

/// Parses a bookmark argument. NULL is `AMBER_ERR_NULL_POINTER`; anything
/// else that is not a bookmark is `AMBER_ERR_BAD_BOOKMARK`.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn bookmark_arg(p: *const c_char, what: &str) -> CResult<Bookmark> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { c_bytes(p, what) }?;
    let bad = |why: String| CError::new(AMBER_ERR_BAD_BOOKMARK, format!("`{what}`: {why}"));
    let text =
        std::str::from_utf8(bytes).map_err(|_| bad("malformed bookmark: not UTF-8".into()))?;
    text.parse()
        .map_err(|e: crate::pitr::BookmarkError| bad(e.to_string()))
}

/// A caller buffer for one bookmark, checked before any work is done.
struct BookmarkBuf(Out<[c_char; AMBER_BOOKMARK_SIZE]>);

impl BookmarkBuf {
    /// `Ok(None)` for a NULL buffer when `optional`.
    ///
    /// # Safety
    /// `buf` is NULL or valid for writing `len` bytes.
    unsafe fn new(
        buf: *mut c_char,
        len: usize,
        what: &str,
        optional: bool,
    ) -> CResult<Option<BookmarkBuf>> {
        if buf.is_null() && optional {
            return Ok(None);
        }
        if buf.is_null() {
            return Err(CError::null(what));
        }
        if len < AMBER_BOOKMARK_SIZE {
            return Err(CError::new(
                AMBER_ERR_BUFFER_TOO_SMALL,
                format!("`{what}` holds {len} bytes; a bookmark needs {AMBER_BOOKMARK_SIZE}"),
            ));
        }
        // SAFETY: non-NULL and valid for `len >= AMBER_BOOKMARK_SIZE`
        // bytes per the contract; `c_char` arrays need no alignment.
        let out = unsafe { Out::new(buf.cast(), what) }?;
        Ok(Some(BookmarkBuf(out)))
    }

    fn set(self, b: Bookmark) {
        self.0.set(bookmark_array(b));
    }
}

fn bookmark_array(b: Bookmark) -> [c_char; AMBER_BOOKMARK_SIZE] {
    let mut out = [0 as c_char; AMBER_BOOKMARK_SIZE];
    for (dst, src) in out.iter_mut().zip(b.to_string().bytes()) {
        *dst = src as c_char;
    }
    out
}

/// The body of the store-level PITR calls: refused from ticket callbacks,
/// which run on threads these calls may need to wait for.
fn store_call(
    store: Ptr<AmberStore>,
    f: impl FnOnce(&mut StoreState) -> CResult<AmberCode>,
) -> AmberCode {
    handle::call(store, |st| {
        if handle::in_callback() {
            return Err(CError::misuse(
                "point-in-time recovery calls may not run in a ticket callback",
            ));
        }
        st.detail = None;
        f(st)
    })
}

/// A time argument: milliseconds since the Unix epoch, at most
/// `INT64_MAX`.
fn time_arg(t_ms: u64) -> CResult<u64> {
    if t_ms > i64::MAX as u64 {
        return Err(CError::new(
            AMBER_ERR_INVALID_INPUT,
            format!("{t_ms} is not a time in ms since the Unix epoch (at most INT64_MAX)"),
        ));
    }
    Ok(t_ms)
}

/// The bookmark of the object's last commit: written into `buf` as 42
/// characters and a NUL. Before the first commit it names commit 0 of the
/// object's timeline. It is restorable once the commit is in the bucket:
/// at once when the ticket resolved at `AMBER_DURABILITY_REMOTE`, shortly
/// after the commit otherwise.
///
/// `buf`: `buf_len` writable bytes owned by the caller; it needs
/// `AMBER_BOOKMARK_SIZE` (43). A smaller buffer is
/// `AMBER_ERR_BUFFER_TOO_SMALL`, and nothing is written.
///
/// # Safety
/// `obj` is NULL or a live handle; `buf` is NULL or valid for writing
/// `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn amber_object_current_bookmark(
    obj: *mut AmberObject,
    buf: *mut c_char,
    buf_len: usize,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    with_object(obj, |o| {
        // SAFETY: the caller's contract above.
        let out = unsafe { BookmarkBuf::new(buf, buf_len, "buf", false) }?;
        if let Some(out) = out {
            out.set(o.current_bookmark());
        }
        Ok(AMBER_OK)
    })
}

/// The bookmark of the last commit of the object called `name` at or
/// before `t_ms` (milliseconds since the Unix epoch), on the timeline that
/// was live then, written into `buf` as for
/// `amber_object_current_bookmark`. Reads the bucket; the object may be
/// open or not.
///
/// `AMBER_ERR_INVALID_INPUT` when `t_ms` is above `INT64_MAX`, older than
/// the retention window, or before the object's history in the bucket
/// starts, and when the store has no bucket; the message says which.
/// `AMBER_ERR_MISUSE` from a ticket callback.
///
/// `name`: `name_len` bytes of UTF-8, borrowed for the call only.
///
/// # Safety
/// `store` is NULL or a live handle; `name` is NULL or points to
/// `name_len` readable bytes; `buf` is NULL or valid for writing
/// `buf_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn amber_store_bookmark_for_time(
    store: *mut AmberStore,
    name: *const c_char,
    name_len: usize,
    t_ms: u64,
    buf: *mut c_char,
    buf_len: usize,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    store_call(store, |st| {
        // SAFETY: the caller's contract above.
        let name = unsafe { utf8(name, name_len, "name") }?;
        // SAFETY: the caller's contract above.
        let out = unsafe { BookmarkBuf::new(buf, buf_len, "buf", false) }?;
        let b = st.store.bookmark_for_time(name, time_arg(t_ms)?)?;
        if let Some(out) = out {
            out.set(b);
        }
        Ok(AMBER_OK)
    })
}

/// Rebuilds the object called `name` as it was at `target` into a new
/// SQLite database file at `out_path`, from the bucket alone. The live
/// object is not touched (it may be open, even in a turn). The file is a
/// plain SQLite database (WAL mode, no WAL file): open it with SQLite to
/// inspect or export the past state.
///
/// `target`: borrowed for the call only (see `AmberRestoreTarget`).
/// `out_path`: NUL-terminated (any bytes but NUL), borrowed for the call
/// only; the file must not exist: amber never overwrites. Its directory
/// must exist and be writable: amber restores into a temporary file there
/// (`.<name>.amber-restore-*`) and links it to `out_path` when complete,
/// so `out_path` never shows a half-written file, and on failure nothing
/// is left behind.
///
/// `allow_partial`: when the history is damaged (a segment missing or
/// failing its checks), false fails with `AMBER_ERR_CORRUPTION`, naming
/// the last consistent bookmark in the message; true restores up to that
/// bookmark and reports `partial`.
///
/// `out_report` (may be NULL) receives what was restored. Codes:
/// `AMBER_ERR_BAD_BOOKMARK` for a target bookmark that is not one;
/// `AMBER_ERR_INVALID_INPUT` for an unknown target kind, a time as for
/// `amber_store_bookmark_for_time`, a well-formed bookmark that names no
/// commit in the bucket (unknown timeline, past the newest commit, older
/// than retention), an empty or existing `out_path`, or no bucket;
/// `AMBER_ERR_IO` when the bucket or the file system fails;
/// `AMBER_ERR_MISUSE` from a ticket callback.
///
/// # Safety
/// `store` is NULL or a live handle; `name` is NULL or points to
/// `name_len` readable bytes; `target` is NULL or points to a readable
/// `AmberRestoreTarget` whose `bookmark`, when used, is NULL or a
/// NUL-terminated string; `out_path` is NULL or a NUL-terminated string;
/// `out_report` is NULL or valid for writing one `AmberRestoreReport`.
#[no_mangle]
pub unsafe extern "C" fn amber_store_restore(
    store: *mut AmberStore,
    name: *const c_char,
    name_len: usize,
    target: *const AmberRestoreTarget,
    out_path: *const c_char,
    allow_partial: bool,
    out_report: *mut AmberRestoreReport,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    store_call(store, |st| {
        // SAFETY: the caller's contract above.
        let name = unsafe { utf8(name, name_len, "name") }?;
        // SAFETY: the caller's contract above.
        let target = unsafe { target.as_ref() }.ok_or_else(|| CError::null("target"))?;
        let target = match target.kind {
            AMBER_RESTORE_LATEST => RestoreTarget::Latest,
            // SAFETY: the caller's contract above.
            AMBER_RESTORE_BOOKMARK => RestoreTarget::Bookmark(unsafe {
                bookmark_arg(target.bookmark, "target.bookmark")
            }?),
            AMBER_RESTORE_TIME => RestoreTarget::Time(time_arg(target.time_ms)?),
            other => {
                return Err(CError::new(
                    AMBER_ERR_INVALID_INPUT,
                    format!("unknown restore target kind {other}"),
                ))
            }
        };
        // SAFETY: the caller's contract above.
        let path = Path::new(OsStr::from_bytes(unsafe { c_bytes(out_path, "out_path") }?));
        if path.as_os_str().is_empty() {
            return Err(CError::new(AMBER_ERR_INVALID_INPUT, "out_path is empty"));
        }
        if path.symlink_metadata().is_ok() {
            return Err(CError::new(
                AMBER_ERR_INVALID_INPUT,
                format!("{} exists; a restore never overwrites", path.display()),
            ));
        }
        // SAFETY: the caller's contract above.
        let out = unsafe { Out::optional(out_report) };
        let opts = RestoreOptions {
            allow_partial,
            ..RestoreOptions::default()
        };
        let report = restore_published(&st.store, name, target, path, opts)?;
        st.detail = report.damage.as_deref().map(to_cstring);
        if let Some(out) = out {
            out.set(c_report(&report, st.detail.as_ref()));
        }
        Ok(AMBER_OK)
    })
}

/// Restores into a fresh temporary file beside `path`, then links it to
/// `path`, which fails rather than overwrite a file that appeared
/// meanwhile (a file system without hard links gets a rename instead). So `path` never shows a half-written file, and a failure
/// leaves nothing there (nor any temporary file).
fn restore_published(
    store: &crate::store::Store,
    name: &str,
    target: RestoreTarget,
    path: &Path,
    opts: RestoreOptions,
) -> CResult<RestoreReport> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name().ok_or_else(|| {
        CError::new(
            AMBER_ERR_INVALID_INPUT,
            format!("{} does not name a file", path.display()),
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(
        ".amber-restore-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(tmp_name);
    let res = store.restore(name, target, &tmp, opts).and_then(|r| {
        let linked = match std::fs::hard_link(&tmp, path) {
            // A file system without hard links: a rename, which could
            // only overwrite a file created in the last instant.
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists && !path.exists() => {
                std::fs::rename(&tmp, path)
            }
            other => other,
        };
        linked.map_err(|e| crate::error::Error::io(format!("create {}", path.display()), e))?;
        Ok(r)
    });
    // The restore's own file, whatever happened; `path` keeps the data.
    let _ = std::fs::remove_file(&tmp);
    Ok(res?)
}

fn c_report(r: &RestoreReport, damage: Option<&CString>) -> AmberRestoreReport {
    AmberRestoreReport {
        bookmark: bookmark_array(r.bookmark),
        target: bookmark_array(r.target),
        commit_time_ms: r.commit_time_ms,
        partial: r.partial,
        damage: damage.map_or(std::ptr::null(), |d| d.as_ptr()),
        bytes_fetched: r.bytes_fetched,
        records_applied: r.records_applied,
    }
}

/// Arranges for the object to be restored to `bookmark` (SQL, KV and the
/// alarm together) when it is next opened, and closes this handle.
///
/// In order: the turn's writes are committed; amber waits until every
/// commit is durable and in the bucket; it writes the bookmark of that
/// current state into `undo_buf` (restoring to it undoes the restore);
/// it leaves a marker, and releases the object as `amber_object_close`
/// does. Every later call on the handle returns `AMBER_ERR_CLOSED`: free
/// it, and open the object again to run the restore. The restore starts a
/// new timeline, so the history after `bookmark`, including the undo
/// bookmark, stays restorable.
///
/// `bookmark`: NUL-terminated, borrowed for the call only; it must name a
/// commit the bucket holds on one of the object's timelines
/// (`AMBER_ERR_BAD_BOOKMARK` when it is not a bookmark at all,
/// `AMBER_ERR_INVALID_INPUT` when it is not restorable; the object is
/// left open and unchanged in both cases). `undo_buf`: `undo_len`
/// writable bytes owned by the caller, at least `AMBER_BOOKMARK_SIZE`
/// (else `AMBER_ERR_BUFFER_TOO_SMALL` before anything happens), or NULL to
/// discard the undo bookmark. Calling it inside a turn begun with
/// `amber_object_begin_turn` is `AMBER_ERR_MISUSE`: end the turn first.
/// `AMBER_ERR_IO` when the current state could not be shipped (nothing is
/// scheduled then). If the final close fails, the restore is still
/// scheduled and `undo_buf` is written.
///
/// # Safety
/// `obj` is NULL or a live handle; `bookmark` is NULL or a NUL-terminated
/// string; `undo_buf` is NULL or valid for writing `undo_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn amber_object_restore_on_next_open(
    obj: *mut AmberObject,
    bookmark: *const c_char,
    undo_buf: *mut c_char,
    undo_len: usize,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let obj = unsafe { Ptr::new(obj) };
    handle::call(obj, |st| {
        st.object()?;
        if st.turn_owner.is_some() {
            return Err(CError::misuse(
                "a turn is begun on this handle; end it before scheduling a restore",
            ));
        }
        // SAFETY: the caller's contract above.
        let target = unsafe { bookmark_arg(bookmark, "bookmark") }?;
        // SAFETY: the caller's contract above.
        let out = unsafe { BookmarkBuf::new(undo_buf, undo_len, "undo_buf", true) }?;
        let undo = st.object()?.restore_on_next_open(target)?;
        if let Some(out) = out {
            out.set(undo);
        }
        let object = st.object.take().ok_or_else(|| CError::closed("object"))?;
        object.close()?;
        Ok(AMBER_OK)
    })
}

/// Reads every snapshot and segment the bucket holds for the object called
/// `name`, checks every CRC and the continuity of each timeline, and sets
/// `*out_ok` to whether all is sound. `out_problems` (may be NULL)
/// receives NULL when sound, else a description of every problem, one per
/// line, owned by the store handle and valid until the next call with it
/// or its free. `AMBER_OK` means the check ran, whatever it found; a
/// bucket that cannot be read is `AMBER_ERR_IO`, no bucket
/// `AMBER_ERR_INVALID_INPUT`, a ticket callback `AMBER_ERR_MISUSE`.
///
/// # Safety
/// `store` is NULL or a live handle; `name` is NULL or points to
/// `name_len` readable bytes; `out_ok` is NULL or valid for writing one
/// `bool`; `out_problems` is NULL or valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_store_verify(
    store: *mut AmberStore,
    name: *const c_char,
    name_len: usize,
    out_ok: *mut bool,
    out_problems: *mut *const c_char,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let store = unsafe { Ptr::new(store) };
    store_call(store, |st| {
        // SAFETY: the caller's contract above.
        let name = unsafe { utf8(name, name_len, "name") }?;
        // SAFETY: the caller's contract above.
        let ok_out = unsafe { Out::new(out_ok, "out_ok") }?;
        // SAFETY: the caller's contract above.
        let problems_out = unsafe { Out::optional(out_problems) };
        let report = st.store.verify(name)?;
        let problems: Vec<String> = report
            .epochs
            .iter()
            .flat_map(|e| {
                e.problems
                    .iter()
                    .map(move |p| format!("epoch {}: {p}", e.epoch))
            })
            .collect();
        st.detail = (!problems.is_empty()).then(|| to_cstring(&problems.join("\n")));
        ok_out.set(report.is_ok());
        if let Some(out) = problems_out {
            out.set(st.detail.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()));
        }
        Ok(AMBER_OK)
    })
}
