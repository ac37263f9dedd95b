//! Explicit transactions: `transaction(|tx| ..)` on savepoints. An `Err`
//! (or a panic) rolls back that level only; the object stays usable.

use std::collections::HashSet;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use super::Object;
use crate::error::{Error, Result};

/// What a savepoint level wrote, so a rollback can drop exactly those
/// entries from the cache.
#[derive(Default)]
pub(crate) struct TouchSet {
    keys: HashSet<String>,
    all: bool,
    alarm: bool,
}

impl TouchSet {
    pub(crate) fn touch(&mut self, key: &str) {
        if !self.all && !self.keys.contains(key) {
            self.keys.insert(key.to_owned());
        }
    }

    pub(crate) fn touch_all(&mut self) {
        self.all = true;
        self.keys.clear();
    }

    pub(crate) fn touch_alarm(&mut self) {
        self.alarm = true;
    }

    fn merge_into(self, parent: &mut TouchSet) {
        if self.all {
            parent.touch_all();
        } else if !parent.all {
            parent.keys.extend(self.keys);
        }
        parent.alarm |= self.alarm;
    }
}

impl Object {
    /// Runs `f` atomically inside the turn. If `f` returns `Err`, its
    /// writes (SQL, KV and alarm) are rolled back and the error returned;
    /// earlier writes of the turn stay. Transactions nest.
    pub fn transaction<T, E>(&mut self, f: impl FnOnce(&mut Object) -> Result<T, E>) -> Result<T, E>
    where
        E: From<Error>,
    {
        self.check_usable()?;
        self.ensure_txn()?;
        // Writes made before the savepoint must be in SQLite before it,
        // or a rollback to it could not tell them apart.
        self.flush_dirty()?;
        let depth = self.savepoints.len();
        let name = format!("amber_sp_{depth}");
        if let Err(e) = self.internal_run(&format!("SAVEPOINT {name}")) {
            return Err(self.break_with(e).into());
        }
        self.savepoints.push(TouchSet::default());
        let out = catch_unwind(AssertUnwindSafe(|| f(self)));
        if self.broken.is_some() {
            return match out {
                Ok(r) => r.and_then(|_| Err(self.broken.clone().expect("broken").into())),
                Err(p) => resume_unwind(p),
            };
        }
        let touched = self.savepoints.pop().unwrap_or_default();
        match out {
            Ok(Ok(v)) => {
                if let Err(e) = self.internal_run(&format!("RELEASE {name}")) {
                    return Err(self.break_with(e).into());
                }
                if let Some(parent) = self.savepoints.last_mut() {
                    touched.merge_into(parent);
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                self.rollback_level(&name, touched)?;
                Err(e)
            }
            Err(panic) => {
                let _ = self.rollback_level(&name, touched);
                resume_unwind(panic)
            }
        }
    }

    fn rollback_level(&mut self, name: &str, touched: TouchSet) -> Result<()> {
        let res = self
            .internal_run(&format!("ROLLBACK TO {name}"))
            .and_then(|_| self.internal_run(&format!("RELEASE {name}")));
        if let Err(e) = res {
            return Err(self.break_with(e));
        }
        if touched.all {
            self.cache.clear();
            self.conn.clear_cache();
        } else {
            for k in &touched.keys {
                self.cache.invalidate(k);
            }
        }
        if touched.alarm || touched.all {
            self.alarm = None;
        }
        Ok(())
    }
}
