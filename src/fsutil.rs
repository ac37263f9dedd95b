//! Small file-system helpers with the fsyncs a crash needs.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Bytes this process can still write on the filesystem holding `path`
/// (root may use the blocks reserved for it), or `None` if it cannot be
/// asked.
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st`
    // points to writable memory of the size statvfs fills in.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the whole struct.
    let st = unsafe { st.assume_init() };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let blocks = if root { st.f_bfree } else { st.f_bavail };
    // fsblkcnt_t and c_ulong are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    Some((blocks as u64).saturating_mul(st.f_frsize as u64))
}

/// Below this much free space the disk counts as full: a write that fails
/// for want of space then names the disk, and the journal stops keeping
/// spare files and retires what it can.
pub(crate) const LOW_SPACE_BYTES: u64 = 1 << 20;

/// Test seam for files amber writes itself: with the `testing` feature, an
/// I/O fault armed through `testing::FaultVfs` whose filter matches the
/// file fails this write (`write`) or sync here, as the disk would. `path`
/// is built only when a plan is armed; without the feature this is
/// nothing, so the commit path pays nothing for it.
#[inline]
pub(crate) fn fault_point(
    write: bool,
    path: impl FnOnce() -> std::path::PathBuf,
) -> std::io::Result<()> {
    #[cfg(feature = "testing")]
    {
        use crate::testing::IoOp;
        let op = if write { IoOp::Write } else { IoOp::Sync };
        if let Some(e) = crate::testing::fault_vfs::strike_path(op, path) {
            return Err(e);
        }
    }
    #[cfg(not(feature = "testing"))]
    let _ = (write, path);
    Ok(())
}

/// Test seam around amber's own fsync of `path`, a file or (`dir`) a
/// directory: with the `testing` feature, the fsync fails while
/// `testing::FaultVfs` has the power cut or when an armed sync fault
/// matches `path`, and one that succeeds tells the crash images what
/// became durable. Without the feature it is `sync()`.
#[inline]
pub(crate) fn synced(
    path: &Path,
    dir: bool,
    sync: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    #[cfg(feature = "testing")]
    {
        use crate::testing::{crash_image, fault_vfs};
        if fault_vfs::std_step(path) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        if let Some(e) = fault_vfs::strike_path(crate::testing::IoOp::Sync, || path.to_path_buf()) {
            return Err(e);
        }
        sync()?;
        if fault_vfs::tracks_path(path) {
            if dir {
                crash_image::dir_synced(path);
            } else {
                crash_image::file_synced(path);
            }
        }
        Ok(())
    }
    #[cfg(not(feature = "testing"))]
    {
        let _ = (path, dir);
        sync()
    }
}

/// Test seam before amber removes the file `path`: with the `testing`
/// feature, the removal fails while `testing::FaultVfs` has the power cut
/// (or cuts it now: a tracked file's removal is a step of the workload),
/// and the crash images keep what a tracked file held until its directory
/// is fsynced.
#[inline]
pub(crate) fn removable(path: &Path) -> std::io::Result<()> {
    before_dir_op(path, || {
        #[cfg(feature = "testing")]
        crate::testing::crash_image::removing(path);
    })
}

/// Test seam before amber renames `from` to `to` (one directory): as
/// [`removable`], for a rename the crash images may undo until the
/// directory is fsynced.
#[inline]
pub(crate) fn renamable(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(not(feature = "testing"))]
    let _ = from;
    before_dir_op(to, || {
        #[cfg(feature = "testing")]
        crate::testing::crash_image::renaming(from, to);
    })
}

/// The shared part of [`removable`] and [`renamable`]: fail while the
/// power is out, else let the crash images `record` a tracked operation.
#[inline]
fn before_dir_op(path: &Path, record: impl FnOnce()) -> std::io::Result<()> {
    #[cfg(feature = "testing")]
    {
        use crate::testing::fault_vfs;
        if fault_vfs::std_step(path) {
            return Err(std::io::Error::from_raw_os_error(libc::EIO));
        }
        if fault_vfs::tracks_path(path) {
            record();
        }
    }
    #[cfg(not(feature = "testing"))]
    let _ = (path, record);
    Ok(())
}

/// fsyncs a directory so entries created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    synced(dir, true, || File::open(dir).and_then(|d| d.sync_all()))
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// fsyncs the file at `path`, if there is one.
pub(crate) fn sync_file_if_exists(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => synced(path, false, || f.sync_all())
            .map_err(|e| Error::io(format!("fsync {}", path.display()), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("open {}", path.display()), e)),
    }
}

/// Writes `bytes` to `path` all-or-nothing: a temporary file, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut f = File::create(&tmp).map_err(|e| Error::io(ctx("create"), e))?;
    f.write_all(bytes).map_err(|e| Error::io(ctx("write"), e))?;
    f.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| Error::io(format!("rename to {}", path.display()), e))?;
    sync_dir(dir)
}

/// Creates the directory `dir` (its parent must exist) without an fsync;
/// fine if it exists.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {
            // Test seam: a new entry the crash images may lose.
            #[cfg(feature = "testing")]
            if crate::testing::fault_vfs::tracks_path(dir) {
                crate::testing::crash_image::created(dir);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io(format!("create directory {}", dir.display()), e)),
    }
}

/// Creates `dir` and its missing parents, fsyncing each new entry's parent.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if !parent.as_os_str().is_empty() {
            create_dir_durable(parent)?;
        }
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io(format!("create directory {}", dir.display()), e)),
    }
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => Ok(()),
    }
}
