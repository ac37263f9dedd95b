//! `AmberConfig`: an opaque builder for a store's configuration. Opaque so
//! that new settings can be added without changing any struct's layout.

use std::ffi::{c_char, OsStr};
use std::os::unix::ffi::OsStrExt;

use std::time::Duration;

use super::args::{c_bytes, c_str, Out};
use super::error::{
    AmberCode, CError, ErrorSlot, AMBER_ERR_INTERNAL, AMBER_ERR_INVALID_INPUT, AMBER_OK,
};
use std::sync::Mutex;

use super::handle::{self, into_raw, Handle, Ptr, State};
use crate::config::{BucketConfig, Config, DurabilityLevel};
use crate::pitr::BucketUrl;

/// A store configuration being built. Made by `amber_config_new`, freed by
/// `amber_config_free`. Used by one thread at a time.
pub struct AmberConfig {
    cell: Mutex<ConfigState>,
}

pub(crate) struct ConfigState {
    pub(crate) config: Config,
    slot: ErrorSlot,
}

impl State for ConfigState {
    fn slot(&mut self) -> &mut ErrorSlot {
        &mut self.slot
    }
}

impl Handle for AmberConfig {
    type State = ConfigState;
    fn cell(&self) -> &Mutex<ConfigState> {
        &self.cell
    }
}

/// A commit's ticket resolves once its WAL frames are fsync'd on local
/// disk (the default). Commits still go to the bucket, if there is one,
/// shortly after.
pub const AMBER_DURABILITY_LOCAL: i32 = 0;
/// A commit's ticket resolves once the commit, and every commit of the
/// object before it, is in the bucket: a reply held on it survives the
/// loss of the machine. Needs a bucket (`amber_store_open` refuses it with
/// `amber_config_disable_bucket`); tickets then resolve after a PUT, so
/// later than at `AMBER_DURABILITY_LOCAL`.
pub const AMBER_DURABILITY_REMOTE: i32 = 1;

/// How far back a restore may go, in milliseconds (default 30 days).
/// History older than this is deleted after each snapshot.
pub const AMBER_PITR_RETENTION_MS: i32 = 0;
/// How long the shipper waits for more commits before it uploads, in
/// milliseconds (default 0: upload as soon as the previous upload of the
/// object landed). Longer means fewer, larger PUTs, and tickets at
/// `AMBER_DURABILITY_REMOTE` that resolve up to this much later.
pub const AMBER_PITR_FLUSH_INTERVAL_MS: i32 = 1;
/// Least time between two snapshots of an object, in milliseconds
/// (default 60000). Snapshots bound how much a restore reads.
pub const AMBER_PITR_SNAPSHOT_MIN_INTERVAL_MS: i32 = 2;
/// Attempts per upload before the object is broken (default 8; its
/// commits stay in the local WAL and are shipped on reopen).
pub const AMBER_PITR_UPLOAD_ATTEMPTS: i32 = 3;

/// Largest KV key, in bytes of UTF-8 (default 2048).
pub const AMBER_LIMIT_MAX_KEY_BYTES: i32 = 0;
/// Largest KV value, in bytes (default 131072).
pub const AMBER_LIMIT_MAX_VALUE_BYTES: i32 = 1;
/// Longest SQL string, in bytes (default 100000).
pub const AMBER_LIMIT_MAX_SQL_LENGTH: i32 = 2;
/// Most columns in a table or result (default 100).
pub const AMBER_LIMIT_MAX_COLUMNS: i32 = 3;
/// Most bound parameters per statement (default 100).
pub const AMBER_LIMIT_MAX_PARAMS: i32 = 4;
/// Largest string, blob or row, in bytes (default 2000000).
pub const AMBER_LIMIT_MAX_ROW_BYTES: i32 = 5;
/// Longest LIKE or GLOB pattern, in bytes (default 50).
pub const AMBER_LIMIT_MAX_LIKE_PATTERN: i32 = 6;
/// Largest object database, in bytes (default 10000000000).
pub const AMBER_LIMIT_MAX_OBJECT_BYTES: i32 = 7;

/// Starts a configuration with amber's defaults: data under `data_dir`
/// (created on open if missing), commits shipped to the file bucket
/// `<data_dir>/bucket` for point-in-time recovery, local durability,
/// Durable Objects' limits.
///
/// `data_dir`: a NUL-terminated path, borrowed for the call only (any bytes
/// but NUL; it need not be UTF-8). `out_config` receives a new handle that
/// the caller owns and frees with `amber_config_free`; it is left unchanged
/// on failure. Failures are reported by code only, since there is no
/// handle yet: `AMBER_ERR_NULL_POINTER`, or `AMBER_ERR_INVALID_INPUT` for
/// an empty path.
///
/// # Safety
/// `data_dir` is NULL or a NUL-terminated string; `out_config` is NULL or
/// valid for writing one pointer.
#[no_mangle]
pub unsafe extern "C" fn amber_config_new(
    data_dir: *const c_char,
    out_config: *mut *mut AmberConfig,
) -> AmberCode {
    handle::guard(AMBER_ERR_INTERNAL, || {
        // SAFETY: the caller's contract above.
        let res = unsafe { c_bytes(data_dir, "data_dir") }.and_then(|dir| {
            // SAFETY: the caller's contract above.
            let out = unsafe { Out::new(out_config, "out_config") }?;
            if dir.is_empty() {
                return Err(CError::new(AMBER_ERR_INVALID_INPUT, "data_dir is empty"));
            }
            let config = Config::new(OsStr::from_bytes(dir));
            out.set(into_raw(AmberConfig {
                cell: Mutex::new(ConfigState {
                    config,
                    slot: ErrorSlot::default(),
                }),
            }));
            Ok(())
        });
        match res {
            Ok(()) => AMBER_OK,
            Err(e) => e.code,
        }
    })
}

/// Sets when a commit's ticket resolves: `AMBER_DURABILITY_LOCAL` (the
/// default) or `AMBER_DURABILITY_REMOTE`; any other value is
/// `AMBER_ERR_INVALID_INPUT`.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_set_durability(
    config: *mut AmberConfig,
    level: i32,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        st.config.durability = match level {
            AMBER_DURABILITY_LOCAL => DurabilityLevel::Local,
            AMBER_DURABILITY_REMOTE => DurabilityLevel::Remote,
            other => {
                return Err(CError::new(
                    AMBER_ERR_INVALID_INPUT,
                    format!("unknown durability level {other}"),
                ))
            }
        };
        Ok(AMBER_OK)
    })
}

/// Sets the bucket that commits are shipped to: `file:///abs/dir`,
/// `memory://` (in this process only; for tests) or
/// `s3://bucket/prefix?region=...` (credentials from the query or the
/// `AWS_*` environment variables, never from the URL's authority).
/// Passing NULL goes back to the default, `file://<data_dir>/bucket`. A
/// URL amber does not accept (another scheme, a relative path, a bad S3
/// bucket name, an unknown option) is `AMBER_ERR_INVALID_INPUT`, and the
/// message says what is wrong; the setting is then unchanged. The bucket
/// itself is first contacted by `amber_store_open`.
///
/// `url`: NUL-terminated UTF-8, borrowed for the call only.
///
/// # Safety
/// `config` is NULL or a live handle; `url` is NULL or a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn amber_config_set_bucket_url(
    config: *mut AmberConfig,
    url: *const c_char,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        if url.is_null() {
            st.config.bucket = BucketConfig::Default;
            return Ok(AMBER_OK);
        }
        // SAFETY: non-NULL, NUL-terminated per the contract.
        let url = unsafe { c_str(url, "url") }?;
        BucketUrl::parse(url).map_err(|e| CError::new(AMBER_ERR_INVALID_INPUT, e.to_string()))?;
        st.config.bucket = BucketConfig::Url(url.to_owned());
        Ok(AMBER_OK)
    })
}

/// Turns log shipping off: no bucket, so no bookmarks that can be
/// restored, no restore, and no `AMBER_DURABILITY_REMOTE`. The PITR
/// functions then answer `AMBER_ERR_INVALID_INPUT`. Undo it with
/// `amber_config_set_bucket_url`.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_disable_bucket(config: *mut AmberConfig) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        st.config.bucket = BucketConfig::Disabled;
        Ok(AMBER_OK)
    })
}

/// Sets one log-shipping setting (`AMBER_PITR_*`). Durations are in
/// milliseconds. Retention, the snapshot interval and upload attempts must
/// be at least 1; the flush interval may be 0. Durations are at most
/// 100 years, the flush interval at most one hour, upload attempts at most
/// 1000. An unknown setting or a value out of range is
/// `AMBER_ERR_INVALID_INPUT`.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_set_pitr(
    config: *mut AmberConfig,
    setting: i32,
    value: u64,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        const HOUR_MS: u64 = 3_600_000;
        const CENTURY_MS: u64 = 100 * 366 * 24 * HOUR_MS;
        let (name, min, max) = match setting {
            AMBER_PITR_RETENTION_MS => ("retention", 1, CENTURY_MS),
            AMBER_PITR_FLUSH_INTERVAL_MS => ("flush interval", 0, HOUR_MS),
            AMBER_PITR_SNAPSHOT_MIN_INTERVAL_MS => ("snapshot interval", 1, CENTURY_MS),
            AMBER_PITR_UPLOAD_ATTEMPTS => ("upload attempts", 1, 1000),
            other => {
                return Err(CError::new(
                    AMBER_ERR_INVALID_INPUT,
                    format!("unknown PITR setting {other}"),
                ))
            }
        };
        if !(min..=max).contains(&value) {
            return Err(CError::new(
                AMBER_ERR_INVALID_INPUT,
                format!("{name} must be {min} to {max}, not {value}"),
            ));
        }
        let ms = Duration::from_millis(value);
        let p = &mut st.config.pitr;
        match setting {
            AMBER_PITR_RETENTION_MS => p.retention = ms,
            AMBER_PITR_FLUSH_INTERVAL_MS => p.flush_interval = ms,
            AMBER_PITR_SNAPSHOT_MIN_INTERVAL_MS => p.snapshot_min_interval = ms,
            _ => p.upload_attempts = value as u32,
        }
        Ok(AMBER_OK)
    })
}

/// Sets one size limit (`AMBER_LIMIT_*`) to `value`, which must be at
/// least 1. An unknown limit or a zero value is `AMBER_ERR_INVALID_INPUT`.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_set_limit(
    config: *mut AmberConfig,
    limit: i32,
    value: u64,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        if value == 0 {
            return Err(CError::new(
                AMBER_ERR_INVALID_INPUT,
                "a limit must be at least 1",
            ));
        }
        let v = usize::try_from(value).unwrap_or(usize::MAX);
        let l = &mut st.config.limits;
        match limit {
            AMBER_LIMIT_MAX_KEY_BYTES => l.max_key_bytes = v,
            AMBER_LIMIT_MAX_VALUE_BYTES => l.max_value_bytes = v,
            AMBER_LIMIT_MAX_SQL_LENGTH => l.max_sql_length = v,
            AMBER_LIMIT_MAX_COLUMNS => l.max_columns = v,
            AMBER_LIMIT_MAX_PARAMS => l.max_params = v,
            AMBER_LIMIT_MAX_ROW_BYTES => l.max_row_bytes = v,
            AMBER_LIMIT_MAX_LIKE_PATTERN => l.max_like_pattern = v,
            AMBER_LIMIT_MAX_OBJECT_BYTES => l.max_object_bytes = value,
            other => {
                return Err(CError::new(
                    AMBER_ERR_INVALID_INPUT,
                    format!("unknown limit {other}"),
                ))
            }
        }
        Ok(AMBER_OK)
    })
}

/// Sets how many amber threads fsync WAL files (default 4, at least 1).
/// Ticket callbacks run on these threads.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_set_sync_threads(
    config: *mut AmberConfig,
    threads: u32,
) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::call(config, |st| {
        if threads == 0 || threads > 256 {
            return Err(CError::new(
                AMBER_ERR_INVALID_INPUT,
                format!("sync threads must be 1 to 256, not {threads}"),
            ));
        }
        st.config.sync_threads = threads as usize;
        Ok(AMBER_OK)
    })
}

/// The message of the last failed call on `config`, including a failed
/// `amber_store_open` with this config. "not an error" after a success.
///
/// Ownership: owned by the handle; valid until the next call with this
/// handle or its free. Never NULL.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`.
#[no_mangle]
pub unsafe extern "C" fn amber_config_errmsg(config: *const AmberConfig) -> *const c_char {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::errmsg(config)
}

/// Frees a configuration. NULL is a no-op. A store opened with it does not
/// need it any more. Returns `AMBER_ERR_BUSY` (and frees nothing) while
/// another thread is using the handle.
///
/// # Safety
/// `config` is NULL or a live handle from `amber_config_new`; after
/// `AMBER_OK` it must not be used again.
#[no_mangle]
pub unsafe extern "C" fn amber_config_free(config: *mut AmberConfig) -> AmberCode {
    // SAFETY: the caller's contract above.
    let config = unsafe { Ptr::new(config) };
    handle::free(config, false, drop)
}
