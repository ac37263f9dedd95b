//! The SQL API: `exec` and its cursor.

use std::sync::Arc;

use super::{Object, Turn};
use crate::durability::Watermark;
use crate::error::{Error, ErrorKind, Result};
use crate::sqlite::{
    is_trivia, leading_keyword, CacheKind, Connection, Denial, SqliteError, Statement,
    StatementParts, Value, ValueRef,
};

/// One result row. Columns are addressed by position or by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i)
    }

    pub fn get_by_name(&self, name: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == name)?;
        self.values.get(i)
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }
}

/// The result of `exec`: the rows of the last statement, read lazily.
///
/// Every statement has run its first step by the time `exec` returns, so
/// writes happen (and fail) there, even if the cursor is never read.
pub struct Cursor<'o> {
    stmt: Option<Statement<'o>>,
    conn: &'o Connection,
    broken: &'o mut Option<Error>,
    mark: &'o Watermark,
    in_txn: bool,
    columns: Arc<[String]>,
    /// The first step's row, not yet handed out.
    pending: bool,
    /// The first step found no row.
    exhausted: bool,
    rows_read: u64,
    earlier_scans: u64,
    changes_before: u64,
}

impl<'o> Cursor<'o> {
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Rows read so far: rows returned plus rows visited by full scans.
    pub fn rows_read(&self) -> u64 {
        let scans = self.stmt.as_ref().map_or(0, |s| s.fullscan_steps());
        self.rows_read + self.earlier_scans + scans
    }

    /// Rows inserted, updated or deleted by the statements of this call.
    pub fn rows_written(&self) -> u64 {
        self.conn.total_changes() - self.changes_before
    }

    /// The next row, or `None` when done.
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        let Some(stmt) = self.stmt.as_mut() else {
            return Ok(None);
        };
        let has_row = if self.pending {
            self.pending = false;
            true
        } else if self.exhausted {
            // The first step already returned SQLITE_DONE: stepping again
            // would reset and re-run the statement.
            false
        } else {
            match stmt.step() {
                Ok(r) => r,
                Err(e) => {
                    self.stmt = None;
                    return Err(self.fail(e));
                }
            }
        };
        if !has_row {
            let scans = stmt.fullscan_steps();
            self.earlier_scans += scans;
            self.stmt = None;
            return Ok(None);
        }
        self.rows_read += 1;
        Ok(Some(Row {
            columns: self.columns.clone(),
            values: stmt.row_values(),
        }))
    }

    #[cold]
    fn fail(&mut self, e: SqliteError) -> Error {
        let err = map_sql_error(self.conn, e);
        if self.in_txn && self.conn.is_autocommit() {
            // SQLite rolled the whole turn back on its own.
            let b = Error::broken(&err);
            *self.broken = Some(b.clone());
            self.mark.fail(b.clone());
            return b;
        }
        err
    }

    /// Exactly one row, or an `InvalidInput` error.
    pub fn one(mut self) -> Result<Row> {
        let first = self
            .next_row()?
            .ok_or_else(|| Error::invalid("expected exactly one row, got none"))?;
        if self.next_row()?.is_some() {
            return Err(Error::invalid("expected exactly one row, got more"));
        }
        Ok(first)
    }

    /// All remaining rows.
    pub fn to_vec(mut self) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        while let Some(r) = self.next_row()? {
            out.push(r);
        }
        Ok(out)
    }
}

impl Iterator for Cursor<'_> {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row().transpose()
    }
}

/// Turns a SQLite failure into amber's error, using the authorizer's reason
/// when it refused the statement.
fn map_sql_error(conn: &Connection, e: SqliteError) -> Error {
    if let Some(d) = conn.take_denial() {
        return Error::denied(&d, conn.reserved_prefix());
    }
    Error::sqlite(e)
}

/// Checks the authorizer cannot make at prepare time. VACUUM has no
/// authorizer code, and trigger and view bodies are only authorized when
/// they run, so a CREATE that names a reserved table is refused up front.
fn check_statement(sql: &str, reserved_prefix: &str) -> Result<()> {
    let kw = leading_keyword(sql);
    if kw.eq_ignore_ascii_case("vacuum") {
        return Err(Error::denied(&Denial::Vacuum, reserved_prefix));
    }
    if kw.eq_ignore_ascii_case("create") && sql.to_ascii_lowercase().contains(reserved_prefix) {
        return Err(Error::denied(
            &Denial::Reserved(reserved_prefix.to_owned() + "…"),
            reserved_prefix,
        ));
    }
    Ok(())
}

fn is_ddl(sql: &str) -> bool {
    let kw = leading_keyword(sql);
    ["create", "drop", "alter"]
        .iter()
        .any(|k| kw.eq_ignore_ascii_case(k))
}

fn begin(conn: &Connection, turn: &mut Turn) -> Result<()> {
    if !turn.open {
        conn.internal(|| conn.prepare_cached(super::schema::BEGIN)?.run())
            .map_err(Error::sqlite)?;
        turn.open = true;
    }
    Ok(())
}

impl Object {
    /// Runs `sql` (one or more statements) with `params`, and returns a
    /// cursor over the last statement's rows. Parameters are consumed in
    /// order: each statement takes as many as it has placeholders.
    ///
    /// Writes join the turn's implicit transaction. Transaction control,
    /// ATTACH, TEMP objects, reserved tables and unlisted PRAGMAs are
    /// refused with `ErrorKind::NotAllowed`.
    pub fn exec(&mut self, sql: &str, params: &[ValueRef<'_>]) -> Result<Cursor<'_>> {
        self.check_usable()?;
        let max = self.shared.config.limits.max_sql_length;
        if sql.len() > max {
            return Err(Error::limit(format!(
                "SQL is {} bytes; the limit is {max} (max_sql_length)",
                sql.len()
            )));
        }
        let conn = &self.conn;
        conn.take_denial();
        let changes_before = conn.total_changes();
        let mut rows_read = 0u64;
        let mut scans = 0u64;
        let mut used = 0usize;
        let mut rest = sql;
        let mut cached = conn.cached_user(sql).map(Statement::into_parts);
        let mut ddl = false;
        // The last statement, detached from this loop's borrow so the cursor
        // can take the object's borrow once nothing else can fail.
        let last: Option<(StatementParts, bool)>;
        loop {
            let (mut st, tail_len) = match cached.take() {
                Some(parts) => (Statement::from_parts(conn, parts), 0),
                None => match conn.prepare_next(rest, false) {
                    Ok((Some(mut st), consumed)) => {
                        let tail = &rest[consumed..];
                        let text = st.sql();
                        check_statement(&text, conn.reserved_prefix())?;
                        ddl |= is_ddl(&text);
                        let tail_len = tail.len();
                        // DDL is not cached: it runs once, and it is what
                        // invalidates the cache.
                        if rest.len() == sql.len() && is_trivia(tail) && !is_ddl(&text) {
                            st.set_cache_slot(CacheKind::User, sql.to_owned());
                        }
                        rest = tail;
                        (st, tail_len)
                    }
                    Ok((None, _)) => {
                        // Only whitespace or comments: an empty result.
                        last = None;
                        break;
                    }
                    Err(e) => return Err(map_sql_error(conn, e)),
                },
            };
            let n = st.parameter_count();
            if used + n > params.len() {
                return Err(Error::invalid(format!(
                    "SQL needs more than the {} parameter(s) given",
                    params.len()
                )));
            }
            st.bind_all(&params[used..used + n])
                .map_err(Error::sqlite)?;
            used += n;
            if !st.readonly() {
                begin(conn, &mut self.turn)?;
                self.turn.wrote = true;
                self.turn.confirmed = true;
            }
            let is_last = tail_len == 0 || is_trivia(rest);
            let mut more = match st.step() {
                Ok(r) => r,
                Err(e) => {
                    let err = map_sql_error(conn, e);
                    drop(st);
                    return Err(self.after_failed_statement(err));
                }
            };
            if is_last {
                // Column names are read before a schema change can clear
                // the cache (they are cached with the statement).
                st.columns();
                last = Some((st.into_parts(), more));
                break;
            }
            // Not the last statement: run it to the end.
            while more {
                rows_read += 1;
                more = match st.step() {
                    Ok(m) => m,
                    Err(e) => {
                        let err = map_sql_error(conn, e);
                        drop(st);
                        return Err(self.after_failed_statement(err));
                    }
                };
            }
            scans += st.fullscan_steps();
        }
        if used < params.len() {
            return Err(Error::invalid(format!(
                "{} parameter(s) given but the SQL uses only {used}",
                params.len()
            )));
        }
        if ddl {
            // Column names of cached statements may have changed.
            self.conn.clear_cache();
        }
        let (mut stmt, pending) = match last {
            Some((parts, pending)) => (Some(Statement::from_parts(&self.conn, parts)), pending),
            None => (None, false),
        };
        let columns: Arc<[String]> = match &mut stmt {
            Some(st) => st.columns(),
            None => Arc::from(Vec::new()),
        };
        Ok(Cursor {
            stmt,
            conn: &self.conn,
            broken: &mut self.broken,
            mark: &self.mark,
            in_txn: self.turn.open,
            columns,
            pending,
            exhausted: !pending,
            rows_read,
            earlier_scans: scans,
            changes_before,
        })
    }

    /// A statement failed. If SQLite rolled back the turn's transaction on
    /// its own (it does for some errors, such as a full disk), the turn's
    /// earlier writes are gone and the object must break.
    #[cold]
    pub(super) fn after_failed_statement(&mut self, err: Error) -> Error {
        let err = super::name_full_disk(&self.dir, err);
        if self.turn.open && self.conn.is_autocommit() {
            self.turn.open = false;
            return self.break_with(err);
        }
        if err.kind() == ErrorKind::Io || err.kind() == ErrorKind::Corruption {
            return self.break_with(err);
        }
        err
    }
}
