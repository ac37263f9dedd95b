//! The segment and snapshot file formats.

pub(crate) mod error;
pub mod segment;
pub mod snapshot;
