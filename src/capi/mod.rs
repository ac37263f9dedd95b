//! The C ABI, behind the `capi` feature.
//!
//! Every function here is `extern "C"`, never lets a panic cross the
//! boundary (each body runs under `catch_unwind`), and reports failures as
//! an [`AmberCode`] plus a message kept in the handle it was called on.
//! `include/amber.h` is generated from this module by cbindgen (see
//! `cbindgen.toml`); the header's preamble states the rules every function
//! follows: ownership, lifetimes, threads and errors.
//!
//! Layout, one concept per file:
//!
//! | file | what |
//! |---|---|
//! | `error.rs` | result codes, the per-handle error slot |
//! | `handle.rs` | the in-use flag, the call wrapper every entry point uses |
//! | `args.rs` | checked conversions of C pointers into Rust values |
//! | `config.rs`, `store.rs` | configuring and opening a store |
//! | `object.rs` | objects and turns |
//! | `sql.rs`, `cursor.rs` | `amber_exec` and its row cursor |
//! | `kv.rs` | the KV API |
//! | `alarm.rs` | the alarm |
//! | `ticket.rs` | durability tickets and their callbacks |
//! | `pitr.rs` | bookmarks, restore, verify (point-in-time recovery) |

// Helpers shared by the entry points.
mod args;
mod handle;

// The entry points, in the order the header lists them (cbindgen follows
// these declarations; the blank-line groups keep rustfmt from sorting).
mod error;

mod config;

mod store;

mod object;

mod sql;

mod cursor;

mod kv;

mod alarm;

mod ticket;

mod pitr;

use std::ffi::c_char;

pub use alarm::*;
pub use config::*;
pub use cursor::*;
pub use error::*;
pub use kv::*;
pub use object::*;
pub use pitr::*;
pub use sql::*;
pub use store::*;
pub use ticket::*;

/// Version of the C ABI. It grows when functions are added and changes
/// meaning only with a new major version of amber.
///
/// 2 added point-in-time recovery: bookmarks, restore and verify
/// (`amber_object_current_bookmark` and the functions after it),
/// `AMBER_DURABILITY_REMOTE`, bucket URLs, `amber_config_disable_bucket`,
/// `amber_config_set_pitr`, `AMBER_ERR_BAD_BOOKMARK` and
/// `AMBER_ERR_BUFFER_TOO_SMALL`. Stores now ship to a default file bucket.
pub const AMBER_ABI_VERSION: u32 = 2;

/// amber's version, as a NUL-terminated string.
///
/// Ownership: a static string owned by the library; never free it.
#[no_mangle]
pub extern "C" fn amber_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    handle::guard(std::ptr::null(), || VERSION.as_ptr().cast())
}

/// The ABI version this library implements; compare with
/// `AMBER_ABI_VERSION` from the header you compiled against.
#[no_mangle]
pub extern "C" fn amber_abi_version() -> u32 {
    handle::guard(AMBER_ABI_VERSION, || AMBER_ABI_VERSION)
}
