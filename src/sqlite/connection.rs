//! The owner of one `sqlite3*` handle.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::Path;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;

use super::authorizer::{authorize, AuthState, Denial};
use super::error::SqliteError;
use super::statement::{CacheEntry, CacheKind, RawStatement, Statement, StatementCache};

/// A SQLite limit, named for `Connection::set_limit`.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Largest string, blob or row, in bytes.
    Length,
    SqlLength,
    Columns,
    Variables,
    LikePatternLength,
}

impl Limit {
    fn id(self) -> c_int {
        match self {
            Limit::Length => ffi::SQLITE_LIMIT_LENGTH,
            Limit::SqlLength => ffi::SQLITE_LIMIT_SQL_LENGTH,
            Limit::Columns => ffi::SQLITE_LIMIT_COLUMN,
            Limit::Variables => ffi::SQLITE_LIMIT_VARIABLE_NUMBER,
            Limit::LikePatternLength => ffi::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
        }
    }
}

/// What the WAL hook has seen. The hook fires after every commit that wrote
/// frames, which is how a commit tells "wrote something" from "read only",
/// and where log shipping learns the WAL's new length.
#[derive(Default)]
pub(crate) struct WalState {
    pub(crate) commits: Cell<u64>,
    pub(crate) frames: Cell<u32>,
}

pub struct Connection {
    db: NonNull<ffi::sqlite3>,
    auth: Box<AuthState>,
    wal: Box<WalState>,
    cache: RefCell<StatementCache>,
}

// SAFETY: opened with SQLITE_OPEN_NOMUTEX (multi-thread mode): a connection may
// move between threads if one uses it at a time. `Connection` is !Sync (Cells),
// so uses and its callbacks happen on one thread at a time.
unsafe impl Send for Connection {}

impl Connection {
    /// Opens (creating if needed) a database file with the given policy.
    ///
    /// Public for tools that read a file amber wrote, such as a database
    /// rebuilt by `Store::restore` (the CLI's `export`, the tests), under
    /// the same SQL policy. An object's own database is opened only
    /// through `Store::open_object`: opening it here as well would bypass
    /// its lock and the store journal.
    pub fn open(
        path: &Path,
        reserved_prefix: &str,
        pragmas: Vec<String>,
    ) -> Result<Connection, SqliteError> {
        Self::open_vfs(path, reserved_prefix, pragmas, None)
    }

    /// As [`Connection::open`], through the registered VFS named `vfs`
    /// (`None`: the default one).
    pub fn open_vfs(
        path: &Path,
        reserved_prefix: &str,
        pragmas: Vec<String>,
        vfs: Option<&str>,
    ) -> Result<Connection, SqliteError> {
        configure_process();
        let vfs = vfs
            .map(CString::new)
            .transpose()
            .map_err(|_| SqliteError::new(ffi::SQLITE_MISUSE, "VFS name contains a NUL byte"))?;
        let cpath = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
            SqliteError::new(ffi::SQLITE_CANTOPEN, "database path contains a NUL byte")
        })?;
        let flags = ffi::SQLITE_OPEN_READWRITE
            | ffi::SQLITE_OPEN_CREATE
            | ffi::SQLITE_OPEN_NOMUTEX
            | ffi::SQLITE_OPEN_EXRESCODE;
        let mut db: *mut ffi::sqlite3 = ptr::null_mut();
        let zvfs = vfs.as_ref().map_or(ptr::null(), |v| v.as_ptr());
        // SAFETY: valid NUL-terminated path and out-pointer; the VFS name is
        // null (the default VFS) or NUL-terminated and outlives the call.
        let rc = unsafe { ffi::sqlite3_open_v2(cpath.as_ptr(), &mut db, flags, zvfs) };
        let Some(db) = NonNull::new(db) else {
            return Err(SqliteError::new(
                ffi::SQLITE_NOMEM,
                "sqlite3_open_v2 returned no handle",
            ));
        };
        let conn = Connection {
            db,
            auth: Box::new(AuthState::new(reserved_prefix, pragmas)),
            wal: Box::default(),
            cache: RefCell::new(StatementCache::default()),
        };
        if rc != ffi::SQLITE_OK {
            return Err(conn.last_error(rc));
        }
        conn.configure()?;
        Ok(conn)
    }

    fn configure(&self) -> Result<(), SqliteError> {
        let db = self.db.as_ptr();
        // SAFETY: live handle. db_config is variadic; DEFENSIVE and
        // ENABLE_LOAD_EXTENSION take (int, int*) as documented.
        unsafe {
            ffi::sqlite3_extended_result_codes(db, 1);
            self.check(ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_DEFENSIVE,
                1 as c_int,
                ptr::null_mut::<c_int>(),
            ))?;
            self.check(ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
                0 as c_int,
                ptr::null_mut::<c_int>(),
            ))?;
            self.check(ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_TRUSTED_SCHEMA,
                0 as c_int,
                ptr::null_mut::<c_int>(),
            ))?;
            // A small lookaside: SQLite's default (40 slots of 1,200 bytes,
            // 47 KiB per connection) was a quarter of a live idle object's
            // memory. 32 slots of 128 bytes (4 KiB) keep the common small
            // allocations off malloc (docs/benchmarks.md, "Density").
            self.check(ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_LOOKASIDE,
                ptr::null_mut::<c_void>(),
                LOOKASIDE_SLOT as c_int,
                LOOKASIDE_SLOTS as c_int,
            ))?;
            // amber checkpoints only what log shipping has already taken;
            // a checkpoint on close would copy unshipped frames into the
            // database and delete the WAL that holds them.
            self.check(ffi::sqlite3_db_config(
                db,
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                1 as c_int,
                ptr::null_mut::<c_int>(),
            ))?;
            // The AuthState box lives as long as the connection; it is
            // unregistered in Drop before the box is freed.
            self.check(ffi::sqlite3_set_authorizer(
                db,
                Some(authorize),
                &*self.auth as *const AuthState as *mut c_void,
            ))?;
            // amber decides when to checkpoint (log shipping must first see
            // the frames), so SQLite's automatic checkpoint stays off. It is
            // itself a WAL hook, so this must come before ours, and nobody
            // may run `PRAGMA wal_autocheckpoint` later: it would replace it.
            self.check(ffi::sqlite3_wal_autocheckpoint(db, 0))?;
            ffi::sqlite3_wal_hook(
                db,
                Some(wal_hook),
                &*self.wal as *const WalState as *mut c_void,
            );
        }
        Ok(())
    }

    /// Runs `f` with the authorizer lifted: for amber's own statements,
    /// which must reach the reserved tables. Covers both prepare and step,
    /// because SQLite re-runs the authorizer when it re-prepares.
    pub(crate) fn internal<T>(&self, f: impl FnOnce() -> T) -> T {
        let was = self.auth.internal.replace(true);
        let out = f();
        self.auth.internal.set(was);
        out
    }

    /// Takes the reason the authorizer gave for the last refusal.
    pub(crate) fn take_denial(&self) -> Option<Denial> {
        self.auth.denial.borrow_mut().take()
    }

    pub(crate) fn reserved_prefix(&self) -> &str {
        &self.auth.reserved_prefix
    }

    pub(crate) fn wal_state(&self) -> &WalState {
        &self.wal
    }

    pub fn set_limit(&self, limit: Limit, value: i32) {
        // SAFETY: live handle; a valid limit id.
        unsafe {
            ffi::sqlite3_limit(self.db.as_ptr(), limit.id(), value);
        }
    }

    pub fn limit(&self, limit: Limit) -> i32 {
        // SAFETY: live handle; -1 queries without changing.
        unsafe { ffi::sqlite3_limit(self.db.as_ptr(), limit.id(), -1) }
    }

    #[cold]
    pub(crate) fn last_error(&self, rc: c_int) -> SqliteError {
        // SAFETY: live handle; errmsg points to a NUL-terminated string owned
        // by SQLite, copied before any other call.
        unsafe {
            let ext = ffi::sqlite3_extended_errcode(self.db.as_ptr());
            let code = if ext & 0xff == rc & 0xff { ext } else { rc };
            let msg = CStr::from_ptr(ffi::sqlite3_errmsg(self.db.as_ptr()))
                .to_string_lossy()
                .into_owned();
            SqliteError::new(code, msg)
        }
    }

    pub(crate) fn check(&self, rc: c_int) -> Result<(), SqliteError> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.last_error(rc))
        }
    }

    /// Prepares the first statement of `sql`. Returns `None` when only
    /// whitespace or comments remain, and the byte offset of the rest.
    pub fn prepare_next<'c>(
        &'c self,
        sql: &str,
        persistent: bool,
    ) -> Result<(Option<Statement<'c>>, usize), SqliteError> {
        if sql.len() > i32::MAX as usize {
            return Err(SqliteError::new(ffi::SQLITE_TOOBIG, "statement too long"));
        }
        let mut stmt: *mut ffi::sqlite3_stmt = ptr::null_mut();
        let mut tail: *const c_char = ptr::null();
        let flags = if persistent {
            ffi::SQLITE_PREPARE_PERSISTENT
        } else {
            0
        };
        // SAFETY: `sql` is valid for `len` bytes (no NUL needed when the
        // length is given); `tail` will point into it.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db.as_ptr(),
                sql.as_ptr().cast(),
                sql.len() as c_int,
                flags,
                &mut stmt,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.last_error(rc));
        }
        let consumed = if tail.is_null() {
            sql.len()
        } else {
            // SAFETY: tail points into `sql` at or after its start.
            (unsafe { tail.offset_from(sql.as_ptr().cast()) }) as usize
        };
        // SAFETY: a non-null statement from a successful prepare is ours.
        let st =
            NonNull::new(stmt).map(|p| Statement::new(self, unsafe { RawStatement::from_raw(p) }));
        Ok((st, consumed.min(sql.len())))
    }

    /// A cached user statement for exactly this SQL, if one is kept.
    /// User statements live in their own map: amber's internal ones were
    /// prepared with the authorizer lifted and must never be handed out for
    /// user SQL.
    pub(crate) fn cached_user<'c>(&'c self, sql: &str) -> Option<Statement<'c>> {
        let (key, entry) = self.cache.borrow_mut().user.remove_entry(sql)?;
        Some(Statement::from_cache(self, CacheKind::User, key, entry))
    }

    /// Prepares one of amber's own single statements, reusing a cached one.
    pub(crate) fn prepare_cached<'c>(&'c self, sql: &str) -> Result<Statement<'c>, SqliteError> {
        if let Some((key, entry)) = self.cache.borrow_mut().internal.remove_entry(sql) {
            return Ok(Statement::from_cache(self, CacheKind::Internal, key, entry));
        }
        let (st, consumed) = self.prepare_next(sql, true)?;
        let Some(mut st) = st else {
            return Err(SqliteError::new(ffi::SQLITE_MISUSE, "empty statement"));
        };
        if !sql[consumed..].trim().is_empty() {
            return Err(SqliteError::new(
                ffi::SQLITE_MISUSE,
                "prepare_cached takes exactly one statement",
            ));
        }
        st.set_cache_slot(CacheKind::Internal, sql.to_owned());
        Ok(st)
    }

    pub(crate) fn return_to_cache(&self, kind: CacheKind, key: String, entry: CacheEntry) {
        entry.raw.reset();
        self.cache.borrow_mut().put(kind, key, entry);
    }

    /// Drops amber's cached statement for `sql`: one used only while an
    /// object opens need not stay in memory while it lives.
    pub(crate) fn forget_cached(&self, sql: &str) {
        self.cache.borrow_mut().internal.remove(sql);
    }

    /// Drops every cached user statement: after DDL, whose column names
    /// may have changed, or after a schema wipe.
    pub fn clear_cache(&self) {
        self.cache.borrow_mut().user.clear();
    }

    /// Runs every statement in `sql` as amber's own (authorizer lifted).
    pub(crate) fn execute_batch_internal(&self, sql: &str) -> Result<(), SqliteError> {
        self.internal(|| {
            let mut rest = sql;
            loop {
                let (st, consumed) = self.prepare_next(rest, false)?;
                match st {
                    Some(mut st) => st.run()?,
                    None => return Ok(()),
                }
                rest = &rest[consumed..];
            }
        })
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE.
    pub fn changes(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { ffi::sqlite3_changes64(self.db.as_ptr()) as u64 }
    }

    pub fn total_changes(&self) -> u64 {
        // SAFETY: live handle.
        unsafe { ffi::sqlite3_total_changes64(self.db.as_ptr()) as u64 }
    }

    /// True when no transaction is open.
    pub fn is_autocommit(&self) -> bool {
        // SAFETY: live handle.
        unsafe { ffi::sqlite3_get_autocommit(self.db.as_ptr()) != 0 }
    }

    /// A PASSIVE checkpoint of the whole WAL. Returns (wal frames, frames
    /// checkpointed).
    pub fn checkpoint_passive(&self) -> Result<(i32, i32), SqliteError> {
        let mut log = 0;
        let mut done = 0;
        // SAFETY: live handle; null schema name means all attached (main).
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.db.as_ptr(),
                ptr::null(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                &mut log,
                &mut done,
            )
        };
        self.check(rc)?;
        Ok((log, done))
    }

    /// The WAL as SQLite has it open, to read frames back through SQLite's
    /// own descriptor (and VFS) rather than one of amber's; `None` before
    /// the connection first opened its WAL.
    pub(crate) fn wal_file(&self) -> Option<super::wal::WalFile<'_>> {
        let mut file: *mut ffi::sqlite3_file = ptr::null_mut();
        // SAFETY: live handle; JOURNAL_POINTER writes one `sqlite3_file*`
        // (the WAL's when one is open, else the rollback journal's) into
        // `file`, which outlives the call.
        let rc = unsafe {
            ffi::sqlite3_file_control(
                self.db.as_ptr(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                &mut file as *mut *mut ffi::sqlite3_file as *mut c_void,
            )
        };
        if rc != ffi::SQLITE_OK || file.is_null() {
            return None;
        }
        // In exclusive WAL mode the pager keeps its WAL as long as the
        // connection (amber never changes an open object's journal mode).
        // SAFETY: SQLite owns the file object that long, and the returned
        // borrow of `self` bounds its use.
        unsafe { super::wal::WalFile::new(file) }
    }

    /// Heap bytes SQLite holds for this connection: (page cache, schema,
    /// prepared statements), from `sqlite3_db_status`.
    pub(crate) fn memory_used(&self) -> (usize, usize, usize) {
        let get = |op: c_int| {
            let (mut cur, mut hi) = (0 as c_int, 0 as c_int);
            // SAFETY: live handle; both out-pointers outlive the call.
            let rc = unsafe { ffi::sqlite3_db_status(self.db.as_ptr(), op, &mut cur, &mut hi, 0) };
            if rc == ffi::SQLITE_OK {
                usize::try_from(cur).unwrap_or(0)
            } else {
                0
            }
        };
        (
            get(ffi::SQLITE_DBSTATUS_CACHE_USED),
            get(ffi::SQLITE_DBSTATUS_SCHEMA_USED),
            get(ffi::SQLITE_DBSTATUS_STMT_USED),
        )
    }

    /// Whether closing the database checkpoints it and deletes its WAL
    /// (SQLite's default; amber turns it off in `configure`, and turns it
    /// back on for a close after which nothing needs the WAL).
    pub fn set_checkpoint_on_close(&self, on: bool) -> Result<(), SqliteError> {
        // SAFETY: live handle; this option takes an int and an optional
        // int pointer (null: do not report the new setting).
        let rc = unsafe {
            ffi::sqlite3_db_config(
                self.db.as_ptr(),
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                c_int::from(!on),
                ptr::null_mut::<c_int>(),
            )
        };
        self.check(rc)
    }

    /// A TRUNCATE checkpoint: the WAL is copied back and emptied.
    pub fn checkpoint_truncate(&self) -> Result<(), SqliteError> {
        // SAFETY: live handle.
        let rc = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                self.db.as_ptr(),
                ptr::null(),
                ffi::SQLITE_CHECKPOINT_TRUNCATE,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        self.check(rc)
    }
}

/// Lookaside slot size and count per connection (see `configure`).
const LOOKASIDE_SLOT: usize = 128;
const LOOKASIDE_SLOTS: usize = 32;

/// Process-wide settings, once, before SQLite initializes: no bulk
/// allocation of 20 pages per page cache up front (SQLite's default,
/// about 85 KiB per connection whatever the database's size); pages come
/// one by one as they are read. When the process already initialized
/// SQLite (another library in it did), this changes nothing.
fn configure_process() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Called before any connection of amber's opens; if SQLite is
        // already initialized it returns SQLITE_MISUSE and changes nothing.
        // SAFETY: SQLITE_CONFIG_PAGECACHE takes (void*, int, int); a null
        // buffer with zero size and count means "no bulk buffer".
        let _ = unsafe {
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                ptr::null_mut::<c_void>(),
                0 as c_int,
                0 as c_int,
            )
        };
    });
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Statements first: close refuses while any are unfinalized.
        let cache = self.cache.get_mut();
        cache.user.clear();
        cache.internal.clear();
        // SAFETY: we own the handle; every Statement borrowed it and is gone.
        // Hooks are unregistered before their state boxes are freed.
        unsafe {
            ffi::sqlite3_set_authorizer(self.db.as_ptr(), None, ptr::null_mut());
            ffi::sqlite3_wal_hook(self.db.as_ptr(), None, ptr::null_mut());
            ffi::sqlite3_close(self.db.as_ptr());
        }
    }
}

/// # Safety
/// `ctx` is the connection's boxed `WalState`, alive while the hook is set.
unsafe extern "C" fn wal_hook(
    ctx: *mut c_void,
    _db: *mut ffi::sqlite3,
    _schema: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: see the contract; Cells are only touched on the connection's
    // own thread, inside the commit call that invoked us.
    let state = unsafe { &*(ctx as *const WalState) };
    state.commits.set(state.commits.get() + 1);
    state.frames.set(frames.max(0) as u32);
    ffi::SQLITE_OK
}
