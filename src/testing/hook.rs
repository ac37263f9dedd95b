//! A test's say over each request that reaches a [`FaultyStore`]: hold it,
//! refuse it, or just watch it go by.
//!
//! ```
//! use std::sync::Arc;
//! use amber::testing::{FaultyStore, Faults, Hook, Op, Request};
//!
//! /// Refuses every PUT of a snapshot.
//! struct NoSnapshots;
//!
//! #[async_trait::async_trait]
//! impl Hook for NoSnapshots {
//!     async fn before(&self, req: Request<'_>) -> object_store::Result<()> {
//!         if req.op == Op::Put && req.key.contains("/snapshots/") {
//!             return Err(object_store::Error::Generic {
//!                 store: "NoSnapshots",
//!                 source: "refused by the test".into(),
//!             });
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let inner = Arc::new(object_store::memory::InMemory::new());
//! let store = FaultyStore::new(inner, 7, Faults::none()).with_hook(Arc::new(NoSnapshots));
//! # drop(store);
//! ```
//!
//! [`FaultyStore`]: super::FaultyStore

use async_trait::async_trait;

/// The kind of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// GET and HEAD (`get_opts`, `get_ranges`).
    Get = 1,
    /// PUT: `put_opts`, the start of a multipart upload, and a copy (keyed
    /// by its destination).
    Put = 2,
    /// LIST, with or without a delimiter (keyed by the prefix, "" for none).
    List = 3,
    /// DELETE, one per key.
    Delete = 4,
}

/// One request, as a [`Hook`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub op: Op,
    /// The object's key (see [`Op`] for LIST and copies).
    pub key: &'a str,
}

/// Called before each request, ahead of the decorator's own counting and
/// fault decisions: whatever the hook holds or refuses, the seeded faults
/// of the requests that pass stay as they were.
///
/// An `Err` fails the request, which then takes no effect and is neither
/// counted nor drawn for faults; a hook that waits delays it. For a LIST
/// stream the hook runs when the listing is first polled (after the
/// decorator's fault decision, which is made at the call); for a DELETE
/// stream, as each key goes by.
#[async_trait]
pub trait Hook: Send + Sync + 'static {
    async fn before(&self, req: Request<'_>) -> object_store::Result<()>;
}
