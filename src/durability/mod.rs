//! Durability tracking: per-object watermarks, tickets that resolve when a
//! commit is durable, and the syncer that makes it so.

mod syncer;
mod ticket;
mod watermark;

pub(crate) use syncer::Syncer;
pub use ticket::Ticket;
pub(crate) use watermark::Watermark;
