//! A fault-injecting SQLite VFS: a shim registered as [`FaultVfs::NAME`]
//! that wraps the default (unix) VFS and, while armed, fails the n-th
//! matching file operation with EIO, or a write with ENOSPC (optionally
//! landing a prefix of the buffer first: a torn write).
//!
//! A store opens its objects' databases through it when
//! `Tuning::sqlite_vfs` names it. Only files whose path contains the armed
//! filter count (checked at each operation), so a test can aim at objects
//! and leave the catalog alone.
//! The plan is process-wide (SQLite's VFS table is): tests that arm it must
//! not run at once (`FaultVfs::exclusive`).
//!
//! **Crash images** (`super::crash_image`). With tracking on
//! (`FaultVfs::track`), every write and truncate of a targeted file is
//! kept as pending until the file's next successful sync, and every file
//! it creates as a pending directory entry until its directory is synced.
//! A *power cut* (`cut_at`, the n-th write, sync or truncate; or
//! `cut_now`) freezes every targeted file and the store journal: from then
//! on their writes and syncs fail, so nothing changes. `power_off` (after
//! the store is dropped) then leaves each file as its last sync left it
//! and removes every unsynced entry; `power_off_seeded` keeps a random
//! subset of the unsynced writes and entries instead.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use libsqlite3_sys as ffi;

use super::crash_image::{self, PowerOff};
use super::SplitMix;

/// What an armed plan fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read = 1,
    Write = 2,
    Sync = 4,
    Truncate = 8,
}

/// The error an armed plan injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoFault {
    /// EIO: `SQLITE_IOERR_*` for the operation.
    Eio,
    /// ENOSPC on a write: `SQLITE_FULL` (EIO for other operations).
    Enospc,
}

/// Handle on the registered shim. The plan lives in statics: there is one
/// VFS per process.
pub struct FaultVfs;

static REGISTER: Once = Once::new();
static OPS: AtomicU32 = AtomicU32::new(0);
/// Matching operations left before the fault; a plan fires once.
static COUNTDOWN: AtomicI64 = AtomicI64::new(0);
static ENOSPC: AtomicBool = AtomicBool::new(false);
static TORN: AtomicBool = AtomicBool::new(false);
static FIRED: AtomicU64 = AtomicU64::new(0);
static SEEN: AtomicU64 = AtomicU64::new(0);
static FILTER: Mutex<String> = Mutex::new(String::new());
static EXCLUSIVE: Mutex<()> = Mutex::new(());
static TRACK: AtomicBool = AtomicBool::new(false);
/// Tracked operations left before the power cut (0: none armed).
static CUT_AT: AtomicI64 = AtomicI64::new(0);
static FROZEN: AtomicBool = AtomicBool::new(false);
static CUT: AtomicBool = AtomicBool::new(false);
/// Tracked writes, syncs and truncates since `track`.
static TRACKED: AtomicU64 = AtomicU64::new(0);

impl FaultVfs {
    /// The name to put in `Tuning::sqlite_vfs`.
    pub const NAME: &'static str = "amber-fault";

    /// Registers the shim (once per process; not as the default VFS).
    pub fn register() {
        REGISTER.call_once(|| {
            // SAFETY: sqlite3_vfs_find(NULL) returns the default VFS, which
            // lives for the whole process; the new VFS is leaked, so the
            // pointer SQLite keeps stays valid.
            unsafe {
                let real = ffi::sqlite3_vfs_find(ptr::null());
                assert!(!real.is_null(), "SQLite has no default VFS");
                let vfs = Box::leak(Box::new(make_vfs(real)));
                let rc = ffi::sqlite3_vfs_register(vfs, 0);
                assert_eq!(rc, ffi::SQLITE_OK, "sqlite3_vfs_register failed");
            }
        });
    }

    /// Serialises the tests that arm the plan.
    pub fn exclusive() -> MutexGuard<'static, ()> {
        EXCLUSIVE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the `nth` (from 1) operation among `ops` on a file whose path
    /// contains `filter`, with `fault`; `torn` lands half of a failed
    /// write's buffer first. Counters restart.
    pub fn arm(ops: &[IoOp], nth: u64, fault: IoFault, torn: bool, filter: &str) {
        *FILTER.lock().unwrap_or_else(|p| p.into_inner()) = filter.to_string();
        ENOSPC.store(fault == IoFault::Enospc, Ordering::SeqCst);
        TORN.store(torn, Ordering::SeqCst);
        FIRED.store(0, Ordering::SeqCst);
        SEEN.store(0, Ordering::SeqCst);
        COUNTDOWN.store(nth as i64, Ordering::SeqCst);
        OPS.store(ops.iter().fold(0, |m, o| m | *o as u32), Ordering::SeqCst);
    }

    /// Stops injecting.
    pub fn disarm() {
        OPS.store(0, Ordering::SeqCst);
    }

    /// Faults injected since the last `arm`.
    pub fn fired() -> u64 {
        FIRED.load(Ordering::SeqCst)
    }

    /// Matching operations seen since the last `arm`.
    pub fn seen() -> u64 {
        SEEN.load(Ordering::SeqCst)
    }

    /// Starts (or stops) keeping crash images of the files whose path
    /// contains `filter`; forgets earlier ones.
    pub fn track(on: bool, filter: &str) {
        *FILTER.lock().unwrap_or_else(|p| p.into_inner()) = filter.to_string();
        crash_image::clear();
        TRACKED.store(0, Ordering::SeqCst);
        FROZEN.store(false, Ordering::SeqCst);
        CUT.store(false, Ordering::SeqCst);
        CUT_AT.store(0, Ordering::SeqCst);
        TRACK.store(on, Ordering::SeqCst);
    }

    /// Cuts the power just before the `nth` (from 1) write, sync or
    /// truncate of a tracked file.
    pub fn cut_at(nth: u64) {
        CUT_AT.store(nth as i64, Ordering::SeqCst);
    }

    /// Cuts the power now.
    pub fn cut_now() {
        CUT.store(true, Ordering::SeqCst);
        FROZEN.store(true, Ordering::SeqCst);
    }

    /// Tracked writes, syncs and truncates since `track` (a workload's
    /// steps, for choosing where to cut).
    pub fn tracked() -> u64 {
        TRACKED.load(Ordering::SeqCst)
    }

    /// Whether the power was cut.
    pub fn was_cut() -> bool {
        CUT.load(Ordering::SeqCst)
    }

    /// Puts every tracked file back to its durable image (call once the
    /// store that wrote them is closed), removes every directory entry
    /// made since its directory's last fsync, and stops tracking.
    pub fn power_off() -> PowerOff {
        Self::end_tracking(crash_image::power_off(None))
    }

    /// As [`FaultVfs::power_off`], but each unsynced write survives, and
    /// each unsynced entry vanishes, by a coin toss drawn from `seed`.
    pub fn power_off_seeded(seed: u64) -> PowerOff {
        let mut rng = SplitMix::new(seed);
        Self::end_tracking(crash_image::power_off(Some(&mut rng)))
    }

    fn end_tracking(p: PowerOff) -> PowerOff {
        TRACK.store(false, Ordering::SeqCst);
        FROZEN.store(false, Ordering::SeqCst);
        CUT_AT.store(0, Ordering::SeqCst);
        p
    }
}

/// For a tracked file's write, sync or truncate: `Err(code)` if the power
/// is (or goes) out, else whether to keep an undo record.
fn powered(file: &FaultFile, code: c_int) -> Result<bool, c_int> {
    if !TRACK.load(Ordering::SeqCst) || !file.targeted() {
        return Ok(false);
    }
    if FROZEN.load(Ordering::SeqCst) {
        return Err(code);
    }
    TRACKED.fetch_add(1, Ordering::SeqCst);
    if CUT_AT.load(Ordering::SeqCst) > 0 && CUT_AT.fetch_sub(1, Ordering::SeqCst) == 1 {
        FaultVfs::cut_now();
        return Err(code);
    }
    Ok(true)
}

/// What `[off, off + n)` of the real file holds (and its length), before
/// a write or truncate changes it.
///
/// # Safety
/// `f` must be a `FaultFile` that `x_open` opened.
unsafe fn before(f: *mut ffi::sqlite3_file, off: i64, n: i64) -> (Vec<u8>, u64) {
    // SAFETY: caller's promise; reads go to the real file.
    unsafe {
        let (r, m) = real(f);
        let mut len: i64 = 0;
        if (m.xFileSize.expect("xFileSize"))(r, &mut len) != ffi::SQLITE_OK {
            len = 0;
        }
        let read = |buf: &mut [u8]| {
            let p = buf.as_mut_ptr() as *mut c_void;
            (m.xRead.expect("xRead"))(r, p, buf.len() as c_int, off) == ffi::SQLITE_OK
        };
        crash_image::before(read, off as u64, n as u64, len.max(0) as u64)
    }
}

/// For amber's own fsync or removal of `path` (outside SQLite): whether
/// it fails because the power is out, or goes out now (a tracked path's
/// fsync is a step of the workload, as a tracked SQLite sync is).
pub(crate) fn std_step(path: &std::path::Path) -> bool {
    if frozen_path(path) {
        return true;
    }
    if !tracks_path(path) {
        return false;
    }
    TRACKED.fetch_add(1, Ordering::SeqCst);
    if CUT_AT.load(Ordering::SeqCst) > 0 && CUT_AT.fetch_sub(1, Ordering::SeqCst) == 1 {
        FaultVfs::cut_now();
        return true;
    }
    false
}

/// Whether the power is out for `path`: the store journal, or a tracked
/// file.
pub(crate) fn frozen_path(path: &std::path::Path) -> bool {
    if !FROZEN.load(Ordering::SeqCst) {
        return false;
    }
    let filter = FILTER.lock().unwrap_or_else(|p| p.into_inner());
    let p = path.to_string_lossy();
    p.contains("/journal/") || (!filter.is_empty() && p.contains(filter.as_str()))
}

/// Whether a std-side change of `path` belongs to the crash images.
pub(crate) fn tracks_path(path: &std::path::Path) -> bool {
    if !TRACK.load(Ordering::SeqCst) {
        return false;
    }
    let filter = FILTER.lock().unwrap_or_else(|p| p.into_inner());
    !filter.is_empty() && path.to_string_lossy().contains(filter.as_str())
}

/// The same plan for files amber writes itself (the store journal): the
/// error to fail this operation on `path` with, if it fails now.
pub(crate) fn strike_path(
    op: IoOp,
    path: impl FnOnce() -> std::path::PathBuf,
) -> Option<std::io::Error> {
    let frozen = FROZEN.load(Ordering::SeqCst);
    if !frozen && OPS.load(Ordering::SeqCst) & op as u32 == 0 {
        return None;
    }
    let path = path();
    if frozen {
        // The power is out: the journal's writes and syncs go nowhere.
        return path
            .to_string_lossy()
            .contains("/journal/")
            .then(|| std::io::Error::from_raw_os_error(libc::EIO));
    }
    let filter = FILTER.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if filter.is_empty() || !path.to_string_lossy().contains(&filter) {
        return None;
    }
    SEEN.fetch_add(1, Ordering::SeqCst);
    if COUNTDOWN.fetch_sub(1, Ordering::SeqCst) != 1 {
        return None;
    }
    FIRED.fetch_add(1, Ordering::SeqCst);
    let enospc = op == IoOp::Write && ENOSPC.load(Ordering::SeqCst);
    Some(std::io::Error::from_raw_os_error(if enospc {
        libc::ENOSPC
    } else {
        libc::EIO
    }))
}

/// Whether this operation on a targeted file fails now.
fn strike(op: IoOp, file: &FaultFile) -> bool {
    if OPS.load(Ordering::SeqCst) & op as u32 == 0 || !file.targeted() {
        return false;
    }
    SEEN.fetch_add(1, Ordering::SeqCst);
    if COUNTDOWN.fetch_sub(1, Ordering::SeqCst) == 1 {
        FIRED.fetch_add(1, Ordering::SeqCst);
        return true;
    }
    false
}

fn code(op: IoOp) -> c_int {
    match (op, ENOSPC.load(Ordering::SeqCst)) {
        (IoOp::Write, true) => ffi::SQLITE_FULL,
        (IoOp::Read, _) => ffi::SQLITE_IOERR_READ,
        (IoOp::Write, _) => ffi::SQLITE_IOERR_WRITE,
        (IoOp::Sync, _) => ffi::SQLITE_IOERR_FSYNC,
        (IoOp::Truncate, _) => ffi::SQLITE_IOERR_TRUNCATE,
    }
}

/// Our file: SQLite's header first (it reads `pMethods`), then the real
/// VFS's file, in the same allocation (`szOsFile` covers both).
#[repr(C)]
struct FaultFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Owned: written by `x_open`, dropped by `io_close`.
    path: String,
    /// The unix VFS fsyncs the directory of a WAL or journal opened with
    /// `SQLITE_OPEN_CREATE` at its first sync: this is that sync to come.
    dirsync: AtomicBool,
}

impl FaultFile {
    /// Whether the current plan aims at this file (decided per operation,
    /// so a plan armed after the file opened still reaches it).
    fn targeted(&self) -> bool {
        let filter = FILTER.lock().unwrap_or_else(|p| p.into_inner());
        !filter.is_empty() && self.path.contains(filter.as_str())
    }
}

/// The wrapped VFS, kept in `pAppData`.
///
/// # Safety
/// `vfs` must be the VFS `make_vfs` built (SQLite passes it back to us).
unsafe fn real_vfs(vfs: *mut ffi::sqlite3_vfs) -> *mut ffi::sqlite3_vfs {
    // SAFETY: caller's promise; that VFS stores the real one there.
    unsafe { (*vfs).pAppData as *mut ffi::sqlite3_vfs }
}

/// # Safety
/// `real` must be a valid VFS that outlives the process.
unsafe fn make_vfs(real: *mut ffi::sqlite3_vfs) -> ffi::sqlite3_vfs {
    // SAFETY: `real` is valid (caller's promise); we copy its fields and
    // replace the ones we wrap.
    let mut v: ffi::sqlite3_vfs = unsafe { ptr::read(real) };
    v.iVersion = v.iVersion.min(2);
    v.szOsFile += std::mem::size_of::<FaultFile>() as c_int;
    v.zName = c"amber-fault".as_ptr();
    v.pNext = ptr::null_mut();
    v.pAppData = real as *mut c_void;
    v.xOpen = Some(x_open);
    v.xDelete = Some(x_delete);
    v.xAccess = Some(x_access);
    v.xFullPathname = Some(x_full_pathname);
    // The rest (randomness, sleep, time, dlopen, last error) take no file
    // and ignore `pAppData` in the unix VFS, so its pointers serve as is.
    v
}

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls us with the VFS we registered.
    let real = unsafe { real_vfs(vfs) };
    let ff = file as *mut FaultFile;
    // SAFETY: SQLite hands us `szOsFile` bytes at `file`; the real file
    // goes right after our header, suitably aligned (FaultFile's size is
    // a multiple of the pointer alignment).
    unsafe {
        let real_file =
            (ff as *mut u8).add(std::mem::size_of::<FaultFile>()) as *mut ffi::sqlite3_file;
        (*ff).base.pMethods = ptr::null();
        (*ff).real = real_file;
        ptr::write(ptr::addr_of_mut!((*ff).path), String::new());
        let journal =
            ffi::SQLITE_OPEN_WAL | ffi::SQLITE_OPEN_MAIN_JOURNAL | ffi::SQLITE_OPEN_SUPER_JOURNAL;
        let create = flags & ffi::SQLITE_OPEN_CREATE != 0;
        ptr::write(
            ptr::addr_of_mut!((*ff).dirsync),
            AtomicBool::new(create && flags & journal != 0),
        );
        let path = if name.is_null() {
            String::new()
        } else {
            CStr::from_ptr(name).to_string_lossy().into_owned()
        };
        let tracked = create && TRACK.load(Ordering::SeqCst) && {
            (*ff).path = path.clone();
            (*ff).targeted()
        };
        let new_entry = tracked && !std::path::Path::new(&path).exists();
        (*ff).path = path;
        let rc = ((*real).xOpen.expect("the real VFS opens files"))(
            real, name, real_file, flags, out_flags,
        );
        if rc != ffi::SQLITE_OK || (*real_file).pMethods.is_null() {
            // SQLite will not call xClose: free the path now.
            drop(std::mem::take(&mut (*ff).path));
            return rc;
        }
        if new_entry {
            crash_image::created(std::path::Path::new(&(*ff).path));
        }
        (*ff).base.pMethods = &IO_METHODS;
        rc
    }
}

unsafe extern "C" fn x_delete(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    sync: c_int,
) -> c_int {
    // SAFETY: SQLite calls us with the VFS we registered, and its own
    // arguments go to the real VFS unchanged; `name` is a NUL-terminated
    // path when not null.
    unsafe {
        if !name.is_null() {
            let path = CStr::from_ptr(name).to_string_lossy().into_owned();
            let path = std::path::Path::new(&path);
            if frozen_path(path) {
                return ffi::SQLITE_IOERR_DELETE;
            }
            if tracks_path(path) {
                crash_image::removing(path);
            }
        }
        let real = real_vfs(vfs);
        ((*real).xDelete.expect("xDelete"))(real, name, sync)
    }
}

unsafe extern "C" fn x_access(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    flags: c_int,
    out: *mut c_int,
) -> c_int {
    // SAFETY: SQLite calls us with the VFS we registered, and its own
    // arguments go to the real VFS unchanged.
    unsafe {
        let real = real_vfs(vfs);
        ((*real).xAccess.expect("xAccess"))(real, name, flags, out)
    }
}

unsafe extern "C" fn x_full_pathname(
    vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: SQLite calls us with the VFS we registered, and its own
    // arguments go to the real VFS unchanged.
    unsafe {
        let real = real_vfs(vfs);
        ((*real).xFullPathname.expect("xFullPathname"))(real, name, n, out)
    }
}

/// The real file's methods.
///
/// # Safety
/// `f` must be a `FaultFile` that `x_open` opened.
unsafe fn real(
    f: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: caller's promise; the real file stays open until x_close.
    unsafe {
        let r = (*(f as *mut FaultFile)).real;
        (r, &*(*r).pMethods)
    }
}

/// # Safety
/// As for [`real`].
unsafe fn fault_file<'a>(f: *mut ffi::sqlite3_file) -> &'a FaultFile {
    // SAFETY: caller's promise.
    unsafe { &*(f as *mut FaultFile) }
}

unsafe extern "C" fn io_close(f: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes a file it opened through us, once; the path
    // was written by x_open and is dropped here, once.
    unsafe {
        let (r, m) = real(f);
        let rc = (m.xClose.expect("xClose"))(r);
        drop(ptr::read(ptr::addr_of!((*(f as *mut FaultFile)).path)));
        rc
    }
}

unsafe extern "C" fn io_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    n: c_int,
    off: i64,
) -> c_int {
    // SAFETY: forwarding SQLite's arguments for a file opened through us.
    unsafe {
        if strike(IoOp::Read, fault_file(f)) {
            return code(IoOp::Read);
        }
        let (r, m) = real(f);
        (m.xRead.expect("xRead"))(r, buf, n, off)
    }
}

unsafe extern "C" fn io_write(
    f: *mut ffi::sqlite3_file,
    buf: *const c_void,
    n: c_int,
    off: i64,
) -> c_int {
    // SAFETY: forwarding SQLite's arguments for a file opened through us.
    unsafe {
        let (r, m) = real(f);
        let old = match powered(fault_file(f), ffi::SQLITE_IOERR_WRITE) {
            Err(code) => return code,
            Ok(true) => Some(before(f, off, i64::from(n))),
            Ok(false) => None,
        };
        let (landed, rc) = if strike(IoOp::Write, fault_file(f)) {
            if TORN.load(Ordering::SeqCst) && n > 1 {
                // A prefix lands, as when power or space ran out mid-write.
                let _ = (m.xWrite.expect("xWrite"))(r, buf, n / 2, off);
                (n / 2, code(IoOp::Write))
            } else {
                (0, code(IoOp::Write))
            }
        } else {
            (n, (m.xWrite.expect("xWrite"))(r, buf, n, off))
        };
        if let Some(old) = old {
            // SAFETY: SQLite's buffer holds `n` >= `landed` bytes.
            let bytes = std::slice::from_raw_parts(buf as *const u8, landed.max(0) as usize);
            crash_image::wrote(&fault_file(f).path, off as u64, old, bytes);
        }
        rc
    }
}

unsafe extern "C" fn io_truncate(f: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: forwarding SQLite's arguments for a file opened through us.
    unsafe {
        match powered(fault_file(f), ffi::SQLITE_IOERR_TRUNCATE) {
            Err(code) => return code,
            Ok(true) => {
                let old = before(f, size, i64::MAX / 2);
                crash_image::truncated(&fault_file(f).path, size as u64, old);
            }
            Ok(false) => {}
        }
        if strike(IoOp::Truncate, fault_file(f)) {
            return code(IoOp::Truncate);
        }
        let (r, m) = real(f);
        (m.xTruncate.expect("xTruncate"))(r, size)
    }
}

unsafe extern "C" fn io_sync(f: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: forwarding SQLite's arguments for a file opened through us.
    unsafe {
        let tracked = match powered(fault_file(f), ffi::SQLITE_IOERR_FSYNC) {
            Err(code) => return code,
            Ok(t) => t,
        };
        if strike(IoOp::Sync, fault_file(f)) {
            return code(IoOp::Sync);
        }
        let (r, m) = real(f);
        let rc = (m.xSync.expect("xSync"))(r, flags);
        let ff = fault_file(f);
        let dirsync = rc == ffi::SQLITE_OK && ff.dirsync.swap(false, Ordering::SeqCst);
        if tracked && rc == ffi::SQLITE_OK {
            // Durable now: nothing before this sync can be undone.
            let path = std::path::Path::new(&ff.path);
            crash_image::file_synced(path);
            if let Some(dir) = path.parent().filter(|_| dirsync) {
                crash_image::dir_synced(dir);
            }
        }
        rc
    }
}

/// Generates a method that forwards to the real file unchanged.
macro_rules! forward {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*)) => {
        forward!($name, $field, ($($arg: $ty),*) -> c_int);
    };
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: forwarding SQLite's arguments for a file opened
            // through us.
            unsafe {
                let (r, m) = real(f);
                (m.$field.expect(stringify!($field)))(r $(, $arg)*)
            }
        }
    };
}

forward!(io_file_size, xFileSize, (size: *mut i64));
forward!(io_lock, xLock, (lock: c_int));
forward!(io_unlock, xUnlock, (lock: c_int));
forward!(io_check_reserved, xCheckReservedLock, (out: *mut c_int));
forward!(io_file_control, xFileControl, (op: c_int, arg: *mut c_void));
forward!(io_shm_lock, xShmLock, (off: c_int, n: c_int, flags: c_int));
forward!(io_shm_unmap, xShmUnmap, (delete: c_int));
forward!(
    io_shm_map,
    xShmMap,
    (region: c_int, size: c_int, extend: c_int, out: *mut *mut c_void)
);
forward!(io_sector_size, xSectorSize, ());
forward!(io_device_characteristics, xDeviceCharacteristics, ());
forward!(io_shm_barrier, xShmBarrier, () -> ());

/// Version 2: WAL's shared memory, and no memory-mapped reads (version 3),
/// which would bypass `xRead`.
static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 2,
    xClose: Some(io_close),
    xRead: Some(io_read),
    xWrite: Some(io_write),
    xTruncate: Some(io_truncate),
    xSync: Some(io_sync),
    xFileSize: Some(io_file_size),
    xLock: Some(io_lock),
    xUnlock: Some(io_unlock),
    xCheckReservedLock: Some(io_check_reserved),
    xFileControl: Some(io_file_control),
    xSectorSize: Some(io_sector_size),
    xDeviceCharacteristics: Some(io_device_characteristics),
    xShmMap: Some(io_shm_map),
    xShmLock: Some(io_shm_lock),
    xShmBarrier: Some(io_shm_barrier),
    xShmUnmap: Some(io_shm_unmap),
    xFetch: None,
    xUnfetch: None,
};
