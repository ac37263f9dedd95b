//! The snapshot format: a whole database file image as of one commit, cut
//! into fixed-size chunks, each one frame of the framing segments use. Byte
//! tables are in `docs/format.md`.
//!
//! ```text
//! header (88 bytes) | chunk 0 | chunk 1 | ... | trailer (24 bytes)
//! ```
//!
//! Chunks are independent zstd frames with their sizes in the clear, so a
//! restore can decode them as they stream in (or on several threads) and
//! memory stays bounded by the chunk size, not the database size.

use crate::id::ObjectId;

use super::frame::Framing;
use super::segment::CommitInfo;
use super::{DecodeError, DecodeLimits, EncodeError, FileKind, DEFAULT_LEVEL};

/// Magic bytes that start every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"AMBERSNP";
/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Size of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 88;
/// Size of a chunk's frame header (before its compressed bytes).
pub const CHUNK_HEADER_LEN: usize = 16;
/// Largest chunk (decompressed) the format allows: 64 MiB.
pub const MAX_CHUNK_BYTES: u64 = 64 << 20;
/// Chunk size the writer uses unless told otherwise: 4 MiB.
pub const DEFAULT_CHUNK_BYTES: u32 = 4 << 20;

const FRAMING: Framing = Framing {
    kind: FileKind::Snapshot,
    magic: SNAPSHOT_MAGIC,
    version: SNAPSHOT_VERSION,
    header_len: SNAPSHOT_HEADER_LEN,
    frame_header_len: CHUNK_HEADER_LEN,
};

/// A snapshot's header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotHeader {
    pub version: u16,
    pub object: ObjectId,
    pub epoch: u64,
    /// The commit the image is the state after: `db_size_pages` and
    /// `page_size` give the image's length.
    pub commit: CommitInfo,
    /// Pages per chunk (the last chunk may be shorter).
    pub chunk_pages: u32,
    pub chunk_count: u32,
}

impl SnapshotHeader {
    /// Length of the database image in bytes.
    pub fn image_len(&self) -> u64 {
        u64::from(self.commit.db_size_pages) * u64::from(self.commit.page_size)
    }
}

/// How the writer cuts and compresses the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Target chunk size in bytes, rounded down to whole pages (at least
    /// one page, at most [`MAX_CHUNK_BYTES`]).
    pub chunk_bytes: u32,
    /// zstd level.
    pub level: i32,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            level: DEFAULT_LEVEL,
        }
    }
}

/// Encodes a whole in-memory image as a snapshot.
pub fn encode_snapshot(
    object: &ObjectId,
    epoch: u64,
    at: CommitInfo,
    image: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    let mut w = SnapshotWriter::new(Vec::new(), object, epoch, at, SnapshotOptions::default())?;
    w.write_image(image)?;
    w.finish()
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub header: SnapshotHeader,
    pub image: Vec<u8>,
}

/// One decoded chunk: `data` belongs at byte `offset` of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub index: u32,
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Decodes and checks a whole snapshot, trailer included.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Snapshot, DecodeError> {
    decode_snapshot_with(bytes, DecodeLimits::DEFAULT)
}

/// [`decode_snapshot`] with explicit limits.
pub fn decode_snapshot_with(bytes: &[u8], limits: DecodeLimits) -> Result<Snapshot, DecodeError> {
    let mut reader = SnapshotReader::with_limits(bytes, limits)?;
    let mut image = Vec::new();
    for chunk in reader.by_ref() {
        let chunk = chunk?;
        if image.is_empty() {
            image = chunk.data;
        } else {
            image.extend_from_slice(&chunk.data);
        }
    }
    Ok(Snapshot {
        header: reader.header().clone(),
        image,
    })
}

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::{read_snapshot_header, SnapshotReader};
pub use writer::SnapshotWriter;
