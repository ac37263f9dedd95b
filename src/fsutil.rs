//! Small file-system helpers with the fsyncs a crash needs.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// fsyncs a directory so entries created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

/// fsyncs the file at `path`, if there is one.
pub(crate) fn sync_file_if_exists(path: &Path) -> Result<()> {
    match File::open(path) {
        Ok(f) => f
            .sync_all()
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
        Ok(()) => Ok(()),
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
