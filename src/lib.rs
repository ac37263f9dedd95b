//! amber: per-object transactional storage.
//!
//! Every object (a chat room, a document, a game session) gets its own
//! SQLite database with a SQL API and a KV API in the same database. The
//! writes of a turn commit as one transaction, and each commit hands back
//! a [`Ticket`] that resolves once the commit is durable.
//!
//! ```no_run
//! use amber::{Config, Store};
//!
//! let store = Store::open(Config::new("./amber-data"))?;
//! let mut room = store.open_object("room-1")?;
//! room.exec("CREATE TABLE IF NOT EXISTS msgs (body TEXT)", &[])?;
//! room.exec("INSERT INTO msgs VALUES (?1)", &["hello".into()])?;
//! room.put("last-seen", b"alice")?;
//! let ticket = room.end_turn()?; // one atomic commit
//! ticket.wait()?;                 // durable on disk
//! # Ok::<(), amber::Error>(())
//! ```

// Layers, lowest first (tests/layering.rs keeps them so): clock, testing
// -> sqlite -> error -> id, fsutil, background, retry -> durability
// -> journal -> pitr -> cluster -> ship -> config -> object -> store
// -> runtime -> server, capi.
// A module imports only from layers below it.
mod background;
#[cfg(feature = "capi")]
pub mod capi;
mod catalog;
pub mod clock;
pub mod cluster;
mod config;
mod durability;
mod error;
mod fsutil;
mod id;
mod journal;
mod object;
pub mod pitr;
mod retry;
pub mod runtime;
pub mod server;
mod ship;
pub mod sqlite;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BucketConfig, ClusterConfig, Config, DurabilityLevel, JournalOptions, Limits, PitrConfig,
    Tuning,
};
pub use durability::Ticket;
pub use error::{Error, ErrorKind, Result};
pub use id::{ObjectId, MAX_NAME_BYTES};
pub use journal::JournalStats;
// What `Store`'s point-in-time methods take and return.
pub use object::{Cursor, ListOptions, MemoryUse, Object, ReadOptions, Row, WriteOptions};
/// The object-store crate whose types `Bucket` takes (`Bucket::from_store`
/// with a store of your own), at the version amber builds.
pub use object_store;
pub use pitr::diagnose::Diagnosis;
pub use pitr::{
    Bookmark, Bucket, EpochHistory, GcReport, History, RestoreOptions, RestoreReport,
    RestoreTarget, VerifyReport,
};
pub use sqlite::{Value, ValueRef};
pub use store::{BucketHistory, ObjectInfo, ObjectListOptions, Store, DEFAULT_PAGE};
