//! The segment format: the WAL pages of a run of consecutive commits of one
//! object, as shipped to the bucket in one PUT. Byte tables and the reasons
//! behind them are in `docs/format.md`.
//!
//! ```text
//! header (92 bytes) | record 0 | record 1 | ... | trailer (24 bytes)
//! ```
//!
//! Each record is one committed transaction: a 40-byte frame header in the
//! clear (sequence number, commit time, database size, page size, page
//! count, lengths and two CRC32s) and one zstd frame holding the pages.
//!
//! Two CRC32s per record: the *frame* CRC covers the frame header and the
//! compressed bytes, so damage is caught before zstd sees the bytes and a
//! record can be verified or skipped without decompressing; the *payload*
//! CRC covers the decompressed bytes, so a fault in compression,
//! decompression or memory between capture and restore is caught too.
//! The trailer's CRC32 covers the whole file before it.
//!
//! Records are checked one by one as they are read, so a reader can stop at
//! a target sequence number, and an error names the last good one.

use crate::id::ObjectId;

use super::error::{
    crc32, new_compressor, valid_page_size, write_trailer, DecodeError, EncodeError, Limits,
    DEFAULT_LEVEL,
};

/// Magic bytes that start every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AMBERSEG";
/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u16 = 1;
/// Size of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 92;
/// Size of a record's frame header (before its compressed bytes).
pub const RECORD_HEADER_LEN: usize = 40;

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
        check_page(&self.commit, self.numbers.last().copied(), number, page)?;
        let raw = (self.numbers.len() as u64 + 1) * (u64::from(self.commit.page_size) + 4);
        let limit = Limits::DEFAULT.max_block_bytes;
        if raw > limit {
            return Err(EncodeError::TooLarge {
                what: "record",
                size: raw,
                limit,
            });
        }
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
    let limit = Limits::DEFAULT.max_database_bytes;
    if db > limit {
        return Err(EncodeError::TooLarge {
            what: "database",
            size: db,
            limit,
        });
    }
    Ok(())
}

fn check_page(
    c: &CommitInfo,
    previous: Option<u32>,
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
    if let Some(prev) = previous {
        if number <= prev {
            return Err(EncodeError::PageOrder {
                page: number,
                previous: prev,
            });
        }
    }
    Ok(())
}

/// Builds one segment in memory, record by record (the shipper's group
/// commit: whatever commits arrive while a PUT is in flight join the next
/// writer). [`SegmentWriter::encoded_len`] tells how big it has grown.
pub struct SegmentWriter {
    object: ObjectId,
    epoch: u64,
    /// Header placeholder, then the encoded records.
    buf: Vec<u8>,
    count: u32,
    first: Option<(u64, u64)>,
    last: Option<(u64, u64)>,
    compressor: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
    compressed: Vec<u8>,
}

impl SegmentWriter {
    /// A writer for `object`'s log under writer `epoch`, at the default zstd
    /// level.
    pub fn new(object: ObjectId, epoch: u64) -> Result<SegmentWriter, EncodeError> {
        SegmentWriter::with_level(object, epoch, DEFAULT_LEVEL)
    }

    pub fn with_level(
        object: ObjectId,
        epoch: u64,
        level: i32,
    ) -> Result<SegmentWriter, EncodeError> {
        Ok(SegmentWriter {
            object,
            epoch,
            buf: vec![0; SEGMENT_HEADER_LEN],
            count: 0,
            first: None,
            last: None,
            compressor: new_compressor(level)?,
            raw: Vec::new(),
            compressed: Vec::new(),
        })
    }

    /// Appends a record. Its sequence number must follow the previous one
    /// and its commit time must not go backwards.
    pub fn push(&mut self, record: &Record) -> Result<(), EncodeError> {
        self.push_pages(record.commit, record.pages())
    }

    /// Appends a commit straight from its pages (for example slices of the
    /// WAL), without building a [`Record`]. On error nothing is appended.
    pub fn push_pages<'p, I>(&mut self, commit: CommitInfo, pages: I) -> Result<(), EncodeError>
    where
        I: IntoIterator<Item = (u32, &'p [u8])>,
    {
        check_commit(&commit)?;
        if let Some((seq, time)) = self.last {
            let expected = seq.checked_add(1).ok_or(EncodeError::Invalid {
                detail: "sequence number overflow",
            })?;
            if commit.seq != expected {
                return Err(EncodeError::NonContiguous {
                    expected,
                    found: commit.seq,
                });
            }
            if commit.commit_time_ms < time {
                return Err(EncodeError::TimeWentBackwards {
                    previous: time,
                    found: commit.commit_time_ms,
                });
            }
        }
        if self.count == u32::MAX {
            return Err(EncodeError::TooLarge {
                what: "segment record count",
                size: u64::from(self.count) + 1,
                limit: u64::from(u32::MAX),
            });
        }
        // Payload: the pages back to back, then their numbers (u32 LE). Data
        // first lets the decoder truncate the buffer in place.
        self.raw.clear();
        let mut numbers = Vec::new();
        let limit = Limits::DEFAULT.max_block_bytes;
        for (n, page) in pages {
            check_page(&commit, numbers.last().copied(), n, page)?;
            numbers.push(n);
            let raw = numbers.len() as u64 * (u64::from(commit.page_size) + 4);
            if raw > limit {
                return Err(EncodeError::TooLarge {
                    what: "record",
                    size: raw,
                    limit,
                });
            }
            self.raw.extend_from_slice(page);
        }
        for n in &numbers {
            self.raw.extend_from_slice(&n.to_le_bytes());
        }
        super::error::compress(&mut self.compressor, &self.raw, &mut self.compressed)?;
        let compressed_len =
            u32::try_from(self.compressed.len()).map_err(|_| EncodeError::TooLarge {
                what: "compressed record",
                size: self.compressed.len() as u64,
                limit: u64::from(u32::MAX),
            })?;
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..8].copy_from_slice(&commit.seq.to_le_bytes());
        h[8..16].copy_from_slice(&commit.commit_time_ms.to_le_bytes());
        h[16..20].copy_from_slice(&commit.db_size_pages.to_le_bytes());
        h[20..24].copy_from_slice(&commit.page_size.to_le_bytes());
        h[24..28].copy_from_slice(&(numbers.len() as u32).to_le_bytes());
        h[28..32].copy_from_slice(&compressed_len.to_le_bytes());
        h[32..36].copy_from_slice(&crc32(&[&self.raw]).to_le_bytes());
        let frame_crc = crc32(&[&h[..36], &self.compressed]);
        h[36..40].copy_from_slice(&frame_crc.to_le_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(&self.compressed);
        self.count += 1;
        let at = (commit.seq, commit.commit_time_ms);
        self.first.get_or_insert(at);
        self.last = Some(at);
        Ok(())
    }

    /// Records so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sequence numbers of the first and last record so far.
    pub fn seq_range(&self) -> Option<(u64, u64)> {
        Some((self.first?.0, self.last?.0))
    }

    /// Size of the segment if finished now.
    pub fn encoded_len(&self) -> usize {
        self.buf.len() + super::error::TRAILER_LEN
    }

    /// Writes the header and trailer and returns the segment's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let (Some((first_seq, first_time)), Some((last_seq, last_time))) = (self.first, self.last)
        else {
            return Err(EncodeError::Empty);
        };
        let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
        h.extend_from_slice(&SEGMENT_MAGIC);
        h.extend_from_slice(&SEGMENT_VERSION.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&self.count.to_le_bytes());
        h.extend_from_slice(self.object.as_bytes());
        h.extend_from_slice(&self.epoch.to_le_bytes());
        h.extend_from_slice(&first_seq.to_le_bytes());
        h.extend_from_slice(&last_seq.to_le_bytes());
        h.extend_from_slice(&first_time.to_le_bytes());
        h.extend_from_slice(&last_time.to_le_bytes());
        let crc = crc32(&[&h]);
        h.extend_from_slice(&crc.to_le_bytes());
        self.buf[..SEGMENT_HEADER_LEN].copy_from_slice(&h);
        write_trailer(&mut self.buf, self.count);
        Ok(self.buf)
    }
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
    decode_segment_with(bytes, Limits::DEFAULT)
}

/// [`decode_segment`] with explicit limits.
pub fn decode_segment_with(bytes: &[u8], limits: Limits) -> Result<Segment, DecodeError> {
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

pub use reader::{read_segment_header, SegmentReader};
