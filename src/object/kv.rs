//! The KV API: a reserved table in the object's own database, fronted by
//! the write-coalescing cache.

use super::{schema, Object};
use crate::error::{Error, Result};
use crate::sqlite::ValueRef;

/// Options for reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Do not keep the value in the cache after reading it.
    pub no_cache: bool,
}

/// Options for writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// The write does not hold the output gate: the turn's ticket does not
    /// wait for it. A failure to commit it still breaks the object.
    pub allow_unconfirmed: bool,
    /// Do not keep the value in the cache once it is committed.
    pub no_cache: bool,
}

/// Which keys `list` returns, in UTF-8 byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// First key, inclusive.
    pub start: Option<String>,
    /// Keys strictly after this one. Combined with `start`, the later wins.
    pub start_after: Option<String>,
    /// Last key, exclusive.
    pub end: Option<String>,
    /// Only keys with this prefix.
    pub prefix: Option<String>,
    /// Descending order.
    pub reverse: bool,
    /// At most this many entries.
    pub limit: Option<usize>,
}

impl ListOptions {
    pub fn prefix(p: impl Into<String>) -> Self {
        ListOptions {
            prefix: Some(p.into()),
            ..Default::default()
        }
    }
}

/// The smallest string greater than every string that starts with `p`, or
/// `None` if there is none. UTF-8 byte order is code point order, so it is
/// `p` with its last character incremented.
fn prefix_successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

impl Object {
    fn check_key(&self, key: &str) -> Result<()> {
        let max = self.shared.config.limits.max_key_bytes;
        if key.len() > max {
            return Err(Error::limit(format!(
                "key is {} bytes; the limit is {max} (max_key_bytes)",
                key.len()
            )));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<()> {
        let max = self.shared.config.limits.max_value_bytes;
        if value.len() > max {
            return Err(Error::limit(format!(
                "value is {} bytes; the limit is {max} (max_value_bytes)",
                value.len()
            )));
        }
        Ok(())
    }

    /// Reads a key. Sees this turn's own writes.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.get_with(key, ReadOptions::default())
    }

    pub fn get_with(&mut self, key: &str, opts: ReadOptions) -> Result<Option<Vec<u8>>> {
        self.check_usable()?;
        self.check_key(key)?;
        if let Some(v) = self.cache.lookup(key) {
            return Ok(v.map(<[u8]>::to_vec));
        }
        // A read error inside a turn may have rolled the turn back.
        let v = match self.read_stored(key) {
            Ok(v) => v,
            Err(e) => return Err(self.after_failed_statement(e)),
        };
        if !opts.no_cache {
            self.cache.insert_clean(key.to_owned(), v.clone());
        }
        Ok(v)
    }

    fn read_stored(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(schema::KV_GET)?;
                st.bind(1, ValueRef::Text(key))?;
                Ok(if st.step()? {
                    Some(st.column_bytes(0))
                } else {
                    None
                })
            })
            .map_err(Error::sqlite)
    }

    /// Reads several keys; returns the ones that exist, sorted by key.
    pub fn get_many(&mut self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>> {
        for k in keys {
            self.check_key(k)?;
        }
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out = Vec::with_capacity(sorted.len());
        for k in sorted {
            if let Some(v) = self.get(k)? {
                out.push((k.to_owned(), v));
            }
        }
        Ok(out)
    }

    pub fn put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.put_with(key, value, WriteOptions::default())
    }

    pub fn put_with(&mut self, key: &str, value: &[u8], opts: WriteOptions) -> Result<()> {
        self.check_usable()?;
        self.check_key(key)?;
        self.check_value(value)?;
        self.record_write(key, Some(value.to_vec()), opts);
        Ok(())
    }

    fn record_write(&mut self, key: &str, value: Option<Vec<u8>>, opts: WriteOptions) {
        if let Some(level) = self.savepoints.last_mut() {
            level.touch(key);
        }
        self.cache.write(key.to_owned(), value, opts.no_cache);
        self.wrote(!opts.allow_unconfirmed);
    }

    /// Writes every entry or none: all are checked before any is applied.
    pub fn put_many(&mut self, entries: &[(&str, &[u8])]) -> Result<()> {
        self.put_many_with(entries, WriteOptions::default())
    }

    pub fn put_many_with(&mut self, entries: &[(&str, &[u8])], opts: WriteOptions) -> Result<()> {
        self.check_usable()?;
        for (k, v) in entries {
            self.check_key(k)?;
            self.check_value(v)?;
        }
        for (k, v) in entries {
            self.record_write(k, Some(v.to_vec()), opts);
        }
        Ok(())
    }

    /// Deletes a key; returns whether it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        self.delete_with(key, WriteOptions::default())
    }

    pub fn delete_with(&mut self, key: &str, opts: WriteOptions) -> Result<bool> {
        let existed = self
            .get_with(key, ReadOptions { no_cache: true })?
            .is_some();
        self.record_write(key, None, opts);
        Ok(existed)
    }

    /// Deletes several keys; returns how many existed.
    pub fn delete_many(&mut self, keys: &[&str]) -> Result<usize> {
        for k in keys {
            self.check_key(k)?;
        }
        let mut n = 0;
        for k in keys {
            if self.delete(k)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Wipes the object: every KV entry, every user table, view, index and
    /// trigger, and the alarms. Part of the turn like any other write.
    pub fn delete_all(&mut self) -> Result<()> {
        self.check_usable()?;
        self.cache.clear();
        self.ensure_txn()?;
        if let Some(level) = self.savepoints.last_mut() {
            level.touch_all();
        }
        self.alarm = Some(None);
        self.wrote(true);
        let res = self.wipe();
        self.conn.clear_cache();
        if let Err(e) = res {
            return Err(self.break_with(e));
        }
        Ok(())
    }

    fn wipe(&mut self) -> Result<()> {
        self.internal_run(schema::KV_DELETE_ALL)?;
        self.internal_run(schema::ALARM_DELETE_ALL)?;
        // Drop in rounds: a virtual table's drop removes its shadow tables,
        // so re-read the schema after each round.
        loop {
            let objects: Vec<(String, String)> = self
                .conn
                .internal(|| {
                    let mut st = self
                        .conn
                        .prepare_next(schema::USER_SCHEMA, false)?
                        .0
                        .expect("query");
                    let mut out = Vec::new();
                    while st.step()? {
                        let kind = String::from_utf8_lossy(&st.column_bytes(0)).into_owned();
                        let name = String::from_utf8_lossy(&st.column_bytes(1)).into_owned();
                        out.push((kind, name));
                    }
                    Ok(out)
                })
                .map_err(Error::sqlite)?;
            let Some((kind, name)) = objects.into_iter().next() else {
                return Ok(());
            };
            let sql = format!(
                "DROP {} IF EXISTS {}",
                kind.to_uppercase(),
                schema::quote_ident(&name)
            );
            self.conn
                .execute_batch_internal(&sql)
                .map_err(Error::sqlite)?;
        }
    }

    /// Lists entries in key order (UTF-8 bytes), honouring this turn's
    /// writes.
    pub fn list(&mut self, opts: &ListOptions) -> Result<Vec<(String, Vec<u8>)>> {
        self.check_usable()?;
        // Pending writes go into the open transaction so SQLite sees them.
        self.flush_dirty()?;
        let mut lower = String::new();
        let mut exclusive = false;
        if let Some(s) = &opts.start {
            lower = s.clone();
        }
        if let Some(a) = &opts.start_after {
            if *a >= lower {
                lower = a.clone();
                exclusive = true;
            }
        }
        let mut upper = opts.end.clone();
        if let Some(p) = &opts.prefix {
            if *p > lower || (*p == lower && !exclusive) {
                lower = p.clone();
                exclusive = false;
            }
            if let Some(succ) = prefix_successor(p) {
                if upper.as_ref().is_none_or(|u| succ < *u) {
                    upper = Some(succ);
                }
            }
        }
        if let Some(u) = &upper {
            if *u <= lower {
                return Ok(Vec::new());
            }
        }
        let limit = match opts.limit {
            Some(0) => return Ok(Vec::new()),
            Some(n) => n.min(i64::MAX as usize) as i64,
            None => -1,
        };
        let shape = (exclusive as usize)
            | ((upper.is_some() as usize) << 1)
            | ((opts.reverse as usize) << 2);
        let sql = schema::KV_LIST[shape];
        let res = self
            .conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(sql)?;
                st.bind(1, ValueRef::Text(&lower))?;
                if let Some(u) = &upper {
                    st.bind(2, ValueRef::Text(u))?;
                }
                st.bind(3, ValueRef::Integer(limit))?;
                let mut out = Vec::new();
                while st.step()? {
                    let key = String::from_utf8_lossy(&st.column_bytes(0)).into_owned();
                    out.push((key, st.column_bytes(1)));
                }
                Ok(out)
            })
            .map_err(Error::sqlite);
        res.map_err(|e| self.after_failed_statement(e))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn successor_bounds_the_prefix() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }
}
