//! The segment format: the WAL pages of a run of consecutive commits of one
//! object, as shipped to the bucket in one PUT. Byte tables and the reasons
//! behind them are in `docs/format.md`; the framing (CRCs, zstd, trailer)
//! is the one snapshots use.
//!
//! ```text
//! header (92 bytes) | record 0 | record 1 | ... | trailer (24 bytes)
//! ```
//!
//! Each record is one committed transaction: a 40-byte frame header in the
//! clear (sequence number, commit time, database size, page size, page
//! count, then the framing's length and two CRC32s) and one zstd frame
//! holding the pages. Records are checked one by one as they are read, so a
//! reader can stop at a target sequence number, and an error names the last
//! good one.

use crate::id::ObjectId;

use super::frame::Framing;
use super::{valid_page_size, DecodeError, DecodeLimits, EncodeError, FileKind};

/// Magic bytes that start every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AMBERSEG";
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u16 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 92;
/// Size of a record's frame header (before its compressed bytes).
pub const RECORD_HEADER_LEN: usize = 40;

const FRAMING: Framing = Framing {
    kind: FileKind::Segment,
    magic: SEGMENT_MAGIC,
    version: SEGMENT_VERSION,
    header_len: SEGMENT_HEADER_LEN,
    frame_header_len: RECORD_HEADER_LEN,
};

/// What identifies one commit, apart from its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommitInfo {
    /// Per-object sequence number of the commit.
    pub seq: u64,
    /// Commit time in ms since the Unix epoch; never decreases per object.
    pub commit_time_ms: u64,
    /// Database size in pages after the commit.
    pub db_size_pages: u32,
    /// Page size in bytes: a power of two from 512 to 65536.
    pub page_size: u32,
}

/// A record's fields, as read from its frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordMeta {
    pub commit: CommitInfo,
    pub page_count: u32,
}

/// One committed transaction: its identity and the pages it wrote, in
/// strictly increasing page-number order, each within the database size.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    commit: CommitInfo,
    numbers: Vec<u32>,
    data: Vec<u8>,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("commit", &self.commit)
            .field("pages", &self.numbers)
            .finish()
    }
}

impl Record {
    /// A record with no pages yet. Refuses a bad page size or a database
    /// size of 0.
    pub fn new(commit: CommitInfo) -> Result<Record, EncodeError> {
        check_commit(&commit)?;
        Ok(Record {
            commit,
            numbers: Vec::new(),
            data: Vec::new(),
        })
    }

    /// A record with the given pages.
    pub fn with_pages<I, P>(commit: CommitInfo, pages: I) -> Result<Record, EncodeError>
    where
        I: IntoIterator<Item = (u32, P)>,
        P: AsRef<[u8]>,
    {
        let mut r = Record::new(commit)?;
        for (n, p) in pages {
            r.push_page(n, p.as_ref())?;
        }
        Ok(r)
    }

    /// Appends a page. Page numbers must be strictly increasing, from 1 to
    /// the database size, and each page exactly `page_size` bytes.
    pub fn push_page(&mut self, number: u32, page: &[u8]) -> Result<(), EncodeError> {
        check_page(&self.commit, &self.numbers, number, page)?;
        self.numbers.push(number);
        self.data.extend_from_slice(page);
        Ok(())
    }

    pub fn commit(&self) -> CommitInfo {
        self.commit
    }

    pub fn seq(&self) -> u64 {
        self.commit.seq
    }

    pub fn commit_time_ms(&self) -> u64 {
        self.commit.commit_time_ms
    }

    pub fn db_size_pages(&self) -> u32 {
        self.commit.db_size_pages
    }

    pub fn page_size(&self) -> u32 {
        self.commit.page_size
    }

    pub fn page_count(&self) -> usize {
        self.numbers.len()
    }

    /// The page numbers, strictly increasing.
    pub fn page_numbers(&self) -> &[u32] {
        &self.numbers
    }

    /// The pages' bytes, back to back in page-number order.
    pub fn page_data(&self) -> &[u8] {
        &self.data
    }

    /// The pages as (page number, bytes).
    pub fn pages(&self) -> impl ExactSizeIterator<Item = (u32, &[u8])> + '_ {
        let ps = self.commit.page_size as usize;
        self.numbers
            .iter()
            .zip(self.data.chunks_exact(ps.max(1)))
            .map(|(n, p)| (*n, p))
    }

    pub fn meta(&self) -> RecordMeta {
        RecordMeta {
            commit: self.commit,
            page_count: self.numbers.len() as u32,
        }
    }
}

fn check_commit(c: &CommitInfo) -> Result<(), EncodeError> {
    if !valid_page_size(c.page_size) {
        return Err(EncodeError::InvalidPageSize {
            page_size: c.page_size,
        });
    }
    if c.db_size_pages == 0 {
        return Err(EncodeError::Invalid {
            detail: "a commit's database size must be at least one page",
        });
    }
    let db = u64::from(c.db_size_pages) * u64::from(c.page_size);
    let limit = DecodeLimits::DEFAULT.max_database_bytes;
    if db > limit {
        return Err(EncodeError::TooLarge {
            what: "database",
            size: db,
            limit,
        });
    }
    Ok(())
}

/// Checks the page that would follow `numbers` in a record of commit `c`,
/// including that the record stays within the default block limit (so
/// everything the encoders write decodes with the default limits).
fn check_page(
    c: &CommitInfo,
    numbers: &[u32],
    number: u32,
    page: &[u8],
) -> Result<(), EncodeError> {
    if page.len() != c.page_size as usize {
        return Err(EncodeError::PageLength {
            page: number,
            len: page.len(),
            page_size: c.page_size,
        });
    }
    if number == 0 || number > c.db_size_pages {
        return Err(EncodeError::PageOutOfRange {
            page: number,
            db_size_pages: c.db_size_pages,
        });
    }
    if let Some(&previous) = numbers.last() {
        if number <= previous {
            return Err(EncodeError::PageOrder {
                page: number,
                previous,
            });
        }
    }
    let raw = (numbers.len() as u64 + 1) * (u64::from(c.page_size) + 4);
    let limit = DecodeLimits::DEFAULT.max_block_bytes;
    if raw > limit {
        return Err(EncodeError::TooLarge {
            what: "record",
            size: raw,
            limit,
        });
    }
    Ok(())
}

/// Encodes `records` (contiguous sequence numbers, non-decreasing times) as
/// one segment of `object`'s log under writer `epoch`.
pub fn encode_segment(
    object: &ObjectId,
    epoch: u64,
    records: &[Record],
) -> Result<Vec<u8>, EncodeError> {
    let mut w = SegmentWriter::new(*object, epoch)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()
}

/// A segment's header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentHeader {
    pub version: u16,
    pub object: ObjectId,
    pub epoch: u64,
    pub record_count: u32,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_time_ms: u64,
    pub last_time_ms: u64,
}

/// A fully decoded and checked segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub header: SegmentHeader,
    pub records: Vec<Record>,
}

/// Decodes and checks a whole segment, trailer included.
pub fn decode_segment(bytes: &[u8]) -> Result<Segment, DecodeError> {
    decode_segment_with(bytes, DecodeLimits::DEFAULT)
}

/// [`decode_segment`] with explicit limits.
pub fn decode_segment_with(bytes: &[u8], limits: DecodeLimits) -> Result<Segment, DecodeError> {
    let mut reader = SegmentReader::with_limits(bytes, limits)?;
    let mut records = Vec::new();
    for r in reader.by_ref() {
        records.push(r?);
    }
    Ok(Segment {
        header: reader.header().clone(),
        records,
    })
}

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::{read_segment_header, SegmentReader};
pub use writer::SegmentWriter;
