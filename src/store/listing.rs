//! Building the catalog of a store whose objects predate it: one walk of
//! the object directories, once. Listing itself reads the catalog.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::catalog::{Catalog, ALARM_UNKNOWN};
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::object::{local_name, ObjectLocks, NAME_FILE};

/// Puts every object directory under `root` into `catalog`, with its
/// alarms not known (the runtime opens each once to learn them), then
/// marks the catalog built. A directory without a database was created
/// but never committed, so it is not an object.
pub(super) fn build_catalog(
    root: &Path,
    catalog: &Catalog,
    locks: &Arc<ObjectLocks>,
    now_ms: u64,
) -> Result<()> {
    let mut n = 0u64;
    for shard in read_dir_sorted(root)? {
        for dir in read_dir_sorted(&shard)? {
            let Some(id) = dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|h| ObjectId::from_hex(h).ok())
            else {
                continue;
            };
            let Some(name) = name_of(&dir, &id, locks)? else {
                continue;
            };
            catalog.insert(&id, &name, now_ms, Some(ALARM_UNKNOWN))?;
            n += 1;
        }
    }
    catalog.set_built()?;
    tracing::info!(
        objects = n,
        "built the store catalog from the object directories"
    );
    Ok(())
}

/// The object's name: its name file, or else its database's own record.
fn name_of(dir: &Path, id: &ObjectId, locks: &Arc<ObjectLocks>) -> Result<Option<String>> {
    let path = dir.join(NAME_FILE);
    match fs::read(&path) {
        Ok(b) => {
            return String::from_utf8(b).map(Some).map_err(|_| {
                Error::new(
                    ErrorKind::Corruption,
                    format!("{} is not UTF-8", path.display()),
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    }
    if !dir.join("db").exists() {
        return Ok(None);
    }
    let Some(_lock) = locks.try_lock(id)? else {
        return Err(Error::new(
            ErrorKind::Locked,
            format!(
                "{} is open in another process; open the store again once it has closed",
                dir.display()
            ),
        ));
    };
    local_name(dir)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("list {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}
