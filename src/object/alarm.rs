//! Alarm storage. An alarm lives in the object's own database, so setting
//! one commits (and later restores) together with the turn's other writes.
//! Firing alarms is the runtime's job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{schema, Object};
use crate::error::{Error, Result};
use crate::sqlite::ValueRef;

/// The name of the alarm the `*_alarm` methods address.
const DEFAULT_ALARM: &str = "";

/// Alarm names are bounded so a hostile caller cannot bloat the table.
pub const MAX_ALARM_NAME_BYTES: usize = 256;

fn to_ms(t: SystemTime) -> Result<u64> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::invalid("alarm time is before 1970"))?;
    u64::try_from(d.as_millis())
        .ok()
        .filter(|ms| *ms <= i64::MAX as u64)
        .ok_or_else(|| Error::invalid("alarm time is too far in the future"))
}

impl Object {
    /// Sets the alarm to `at`, replacing any earlier one.
    pub fn set_alarm(&mut self, at: SystemTime) -> Result<()> {
        self.set_alarm_ms(to_ms(at)?)
    }

    /// Sets the alarm to `ms` milliseconds since the Unix epoch.
    pub fn set_alarm_ms(&mut self, ms: u64) -> Result<()> {
        self.set_named_alarm_ms(DEFAULT_ALARM, ms)?;
        self.alarm = Some(Some(ms));
        Ok(())
    }

    /// The alarm's time, if one is set.
    pub fn get_alarm(&mut self) -> Result<Option<SystemTime>> {
        Ok(self
            .get_alarm_ms()?
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms)))
    }

    pub fn get_alarm_ms(&mut self) -> Result<Option<u64>> {
        self.check_usable()?;
        if let Some(a) = self.alarm {
            return Ok(a);
        }
        let a = self.get_named_alarm_ms(DEFAULT_ALARM)?;
        self.alarm = Some(a);
        Ok(a)
    }

    pub fn delete_alarm(&mut self) -> Result<()> {
        self.delete_named_alarm(DEFAULT_ALARM)?;
        self.alarm = Some(None);
        Ok(())
    }

    /// Sets a named alarm. Names let one object keep several alarms; the
    /// unnamed methods use the empty name.
    pub fn set_named_alarm_ms(&mut self, name: &str, ms: u64) -> Result<()> {
        self.check_usable()?;
        check_name(name)?;
        if ms > i64::MAX as u64 {
            return Err(Error::invalid("alarm time is too far in the future"));
        }
        self.alarm_write(name, Some(ms))
    }

    pub fn get_named_alarm_ms(&mut self, name: &str) -> Result<Option<u64>> {
        self.check_usable()?;
        check_name(name)?;
        let res = self
            .conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(schema::ALARM_GET)?;
                st.bind(1, ValueRef::Text(name))?;
                Ok(if st.step()? {
                    Some(st.column_i64(0).max(0) as u64)
                } else {
                    None
                })
            })
            .map_err(Error::sqlite);
        res.map_err(|e| self.after_failed_statement(e))
    }

    pub fn delete_named_alarm(&mut self, name: &str) -> Result<()> {
        self.check_usable()?;
        check_name(name)?;
        self.alarm_write(name, None)
    }

    /// Every stored alarm as `(name, time_ms)`, sorted by name; the default
    /// alarm has the empty name. Added for the runtime's alarm scheduler,
    /// which indexes all alarms of an object after each writing turn and at
    /// start-up.
    pub fn list_alarms(&mut self) -> Result<Vec<(String, u64)>> {
        self.check_usable()?;
        let res = self
            .conn
            .internal(|| {
                let mut st = self.conn.prepare_cached(schema::ALARM_LIST)?;
                let mut out = Vec::new();
                while st.step()? {
                    let name = String::from_utf8_lossy(&st.column_bytes(0)).into_owned();
                    out.push((name, st.column_i64(1).max(0) as u64));
                }
                Ok(out)
            })
            .map_err(Error::sqlite);
        res.map_err(|e| self.after_failed_statement(e))
    }

    fn alarm_write(&mut self, name: &str, ms: Option<u64>) -> Result<()> {
        if let Some(ms) = ms {
            // Before the turn can commit: the catalog is never later than
            // the object's earliest alarm, or a start would miss it.
            if self.catalog_alarm.is_none_or(|c| ms < c) {
                self.shared.catalog.lower_alarm(&self.id, ms)?;
                self.catalog_alarm = Some(self.catalog_alarm.map_or(ms, |c| c.min(ms)));
            }
        }
        self.ensure_txn()?;
        if let Some(level) = self.savepoints.last_mut() {
            level.touch_alarm();
        }
        let res = match ms {
            Some(ms) => self.internal_run_with(
                schema::ALARM_SET,
                &[ValueRef::Text(name), ValueRef::Integer(ms as i64)],
            ),
            None => self.internal_run_with(schema::ALARM_DELETE, &[ValueRef::Text(name)]),
        };
        if let Err(e) = res {
            return Err(self.after_failed_statement(e));
        }
        if name == DEFAULT_ALARM {
            self.alarm = Some(ms);
        }
        self.wrote(true);
        Ok(())
    }
}

/// The object's earliest alarm, of any name.
pub(super) fn earliest(conn: &crate::sqlite::Connection) -> Result<Option<u64>> {
    conn.internal(|| {
        let mut st = conn.prepare_cached(schema::ALARM_EARLIEST)?;
        st.step()?;
        Ok((!st.column_is_null(0)).then(|| st.column_i64(0).max(0) as u64))
    })
    .map_err(Error::sqlite)
}

fn check_name(name: &str) -> Result<()> {
    if name.len() > MAX_ALARM_NAME_BYTES {
        return Err(Error::limit(format!(
            "alarm name is {} bytes; the limit is {MAX_ALARM_NAME_BYTES}",
            name.len()
        )));
    }
    Ok(())
}
