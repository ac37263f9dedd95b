//! Built-in example classes, so `amber serve` is useful out of the box.

pub mod chat;
pub mod counter;
pub mod kv;

use crate::error::Result;
use crate::object::Object;

/// True if user table `name` exists. Checked before `CREATE TABLE`, because
/// even `CREATE TABLE IF NOT EXISTS` counts as a write and would commit on
/// every wake.
pub(crate) fn table_exists(obj: &mut Object, name: &str) -> Result<bool> {
    let row = obj
        .exec(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            &[name.into()],
        )?
        .one()?;
    Ok(row.get(0).and_then(|v| v.as_i64()).unwrap_or(0) > 0)
}
