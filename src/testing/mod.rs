//! Test seams, compiled only with the `testing` feature: object-store
//! decorators that inject seeded faults, count requests and let a test
//! hold or refuse them, and the seeded generator they draw from.
//!
//! The crate's own integration tests, benches and examples get the feature
//! through a dev-dependency of the crate on itself (Cargo.toml); another
//! crate asks for it with `amber = { ..., features = ["testing"] }`.
//!
//! - [`FaultyStore`]: wraps any `object_store::ObjectStore` (hand it to
//!   `Bucket::from_store`); [`Faults`] are its rates, [`Counts`] and
//!   [`Injected`] what it saw and did. `FaultyStore::counting` is the
//!   counting-only decorator.
//! - [`Hook`]: a test's callback before each request ([`Request`], [`Op`]).
//! - [`FaultVfs`]: a SQLite VFS shim that fails the n-th read, write, sync
//!   or truncate of an object's files with EIO or ENOSPC (`Tuning::sqlite_vfs`),
//!   and keeps crash images of them ([`PowerOff`]: what a power cut left).
//! - [`SplitMix`]: the seeded generator; its output for a seed never
//!   changes.

pub mod crash_image;
pub mod fault_vfs;
pub mod faulty;
pub mod hook;
pub mod rng;

pub use crash_image::PowerOff;
pub use fault_vfs::{FaultVfs, IoFault, IoOp};
pub use faulty::{Counts, Faults, FaultyStore, Injected};
pub use hook::{Hook, Op, Request};
pub use rng::SplitMix;
