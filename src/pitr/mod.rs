//! Point-in-time recovery: the formats and bucket layout that log shipping,
//! snapshots and restore are built on.
//!
//! - [`format`]: the bytes: [`segment`] (the WAL pages of a run of
//!   commits, one record per commit) and [`snapshot`] (a whole database
//!   image at one commit), framed alike.
//! - [`keys`]: where segments and snapshots live in the bucket, and
//!   bookmarks.
//! - [`bucket`]: an `object_store` backend chosen from a URL.
//!
//! `docs/format.md` documents every byte and the reasons for the choices.

pub mod bucket;
pub mod diagnose;
pub mod format;
pub mod gc;
pub mod history;
pub mod keys;
pub mod restore;
mod shared_log;
pub mod verify;

pub use bucket::{Bucket, BucketUrl, BucketUrlError, DirListing};
pub use format::store_log;
pub use format::{segment, snapshot};
pub use format::{
    Checksum, DecodeError, DecodeLimits, EncodeError, FileKind, IoCause, Location, Problem,
    DEFAULT_LEVEL, MAX_PAGE_SIZE, MIN_PAGE_SIZE,
};
pub use gc::{gc_object, gc_store_log, purge_object, GcReport};
pub use history::{
    load_history, EpochHistory, History, Manifest, SegmentRef, SegmentSource, SnapshotRef,
};
pub use keys::{Bookmark, BookmarkError, KeyError, KeyKind, KeyLayout, ParsedKey};
pub use restore::{restore_to_file, RestoreOptions, RestoreProgress, RestoreReport, RestoreTarget};
pub use segment::{
    decode_segment, decode_segment_with, encode_segment, read_segment_header, CommitInfo, Record,
    RecordMeta, Segment, SegmentHeader, SegmentReader, SegmentWriter,
};
pub use snapshot::{
    decode_snapshot, decode_snapshot_with, encode_snapshot, read_snapshot_header, Snapshot,
    SnapshotChunk, SnapshotHeader, SnapshotOptions, SnapshotReader, SnapshotWriter,
};
pub use verify::{verify_object, EpochReport, VerifyReport};
