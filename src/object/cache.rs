//! The KV write-coalescing cache.
//!
//! `dirty` holds the turn's writes that are not yet in SQLite (last write
//! wins). `clean` holds values that match SQLite's view inside the current
//! transaction, in an LRU bounded in bytes; `None` there caches an absent
//! key. Evicting a clean entry is always safe: SQLite has it.

use std::collections::HashMap;

use lru::LruCache;

/// Approximate per-entry bookkeeping, counted against the budget.
const ENTRY_OVERHEAD: usize = 64;

pub(crate) struct DirtyEntry {
    pub(crate) value: Option<Vec<u8>>,
    pub(crate) no_cache: bool,
}

pub(crate) struct KvCache {
    clean: LruCache<String, Option<Vec<u8>>>,
    clean_bytes: usize,
    budget: usize,
    dirty: HashMap<String, DirtyEntry>,
}

fn cost(key: &str, value: &Option<Vec<u8>>) -> usize {
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD
}

impl KvCache {
    pub(crate) fn new(budget: usize) -> Self {
        KvCache {
            clean: LruCache::unbounded(),
            clean_bytes: 0,
            budget,
            dirty: HashMap::new(),
        }
    }

    /// `Some(v)` when the cache knows the key's value (`v = None`: absent).
    pub(crate) fn lookup(&mut self, key: &str) -> Option<Option<&[u8]>> {
        if let Some(d) = self.dirty.get(key) {
            return Some(d.value.as_deref());
        }
        self.clean.get(key).map(|v| v.as_deref())
    }

    pub(crate) fn insert_clean(&mut self, key: String, value: Option<Vec<u8>>) {
        let c = cost(&key, &value);
        if c > self.budget {
            self.remove_clean(&key);
            return;
        }
        let klen = key.len();
        if let Some(old) = self.clean.put(key, value) {
            self.clean_bytes -= klen + old.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD;
        }
        self.clean_bytes += c;
        while self.clean_bytes > self.budget {
            match self.clean.pop_lru() {
                Some((k, v)) => self.clean_bytes -= cost(&k, &v),
                None => break,
            }
        }
    }

    fn remove_clean(&mut self, key: &str) {
        if let Some(old) = self.clean.pop(key) {
            self.clean_bytes -= cost(key, &old);
        }
    }

    /// Records a write. A clean entry for the key may stay behind: the
    /// dirty one shadows it, and the flush replaces it.
    pub(crate) fn write(&mut self, key: String, value: Option<Vec<u8>>, no_cache: bool) {
        self.dirty.insert(key, DirtyEntry { value, no_cache });
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    pub(crate) fn take_dirty(&mut self) -> HashMap<String, DirtyEntry> {
        std::mem::take(&mut self.dirty)
    }

    /// Called after `take_dirty`'s entries reached SQLite.
    pub(crate) fn flushed(&mut self, key: String, entry: DirtyEntry) {
        if entry.no_cache {
            self.remove_clean(&key);
        } else {
            self.insert_clean(key, entry.value);
        }
    }

    /// Forgets one key entirely, dirty or clean.
    pub(crate) fn invalidate(&mut self, key: &str) {
        self.dirty.remove(key);
        self.remove_clean(key);
    }

    pub(crate) fn clear(&mut self) {
        self.dirty.clear();
        self.clean.clear();
        self.clean_bytes = 0;
    }

    /// Bytes held by clean entries (for budgets and tests).
    pub(crate) fn clean_bytes(&self) -> usize {
        self.clean_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_stays_within_budget_and_evicts_oldest() {
        let mut c = KvCache::new(3 * (ENTRY_OVERHEAD + 11));
        for k in ["a", "b", "c", "d"] {
            c.insert_clean(k.into(), Some(vec![0; 10]));
        }
        assert!(c.clean_bytes() <= 3 * (ENTRY_OVERHEAD + 11));
        assert!(c.lookup("a").is_none());
        assert!(c.lookup("d").is_some());
    }

    #[test]
    fn dirty_shadows_clean_and_last_write_wins() {
        let mut c = KvCache::new(1 << 20);
        c.insert_clean("k".into(), Some(b"old".to_vec()));
        c.write("k".into(), Some(b"new".to_vec()), false);
        c.write("k".into(), None, false);
        assert_eq!(c.lookup("k"), Some(None));
        let d = c.take_dirty();
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn oversized_entries_are_not_cached() {
        let mut c = KvCache::new(100);
        c.insert_clean("k".into(), Some(vec![0; 1000]));
        assert!(c.lookup("k").is_none());
        assert_eq!(c.clean_bytes(), 0);
    }
}
