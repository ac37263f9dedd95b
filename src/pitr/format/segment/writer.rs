//! Writing segments: records are framed as they are pushed, the header
//! (which names the first and last commit) is filled in by `finish`.

use crate::id::ObjectId;

use super::super::frame::{trailer, FrameWriter, TRAILER_LEN};
use super::super::{EncodeError, DEFAULT_LEVEL};
use super::{check_commit, check_page, CommitInfo, Record, FRAMING, SEGMENT_HEADER_LEN};

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
    frames: FrameWriter,
    /// The payload being framed, reused across records.
    raw: Vec<u8>,
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
            frames: FrameWriter::new(level)?,
            raw: Vec::new(),
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
        for (n, page) in pages {
            check_page(&commit, &numbers, n, page)?;
            numbers.push(n);
            self.raw.extend_from_slice(page);
        }
        for n in &numbers {
            self.raw.extend_from_slice(&n.to_le_bytes());
        }
        let (h, c) = self.frames.frame(
            &[
                &commit.seq.to_le_bytes(),
                &commit.commit_time_ms.to_le_bytes(),
                &commit.db_size_pages.to_le_bytes(),
                &commit.page_size.to_le_bytes(),
                &(numbers.len() as u32).to_le_bytes(),
            ],
            &self.raw,
            "compressed record",
        )?;
        self.buf.extend_from_slice(h);
        self.buf.extend_from_slice(c);
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
        self.buf.len() + TRAILER_LEN
    }

    /// Writes the header and trailer and returns the segment's bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let (Some((first_seq, first_time)), Some((last_seq, last_time))) = (self.first, self.last)
        else {
            return Err(EncodeError::Empty);
        };
        let h = FRAMING.encode_header(&[
            &self.count.to_le_bytes(),
            self.object.as_bytes(),
            &self.epoch.to_le_bytes(),
            &first_seq.to_le_bytes(),
            &last_seq.to_le_bytes(),
            &first_time.to_le_bytes(),
            &last_time.to_le_bytes(),
        ]);
        self.buf[..SEGMENT_HEADER_LEN].copy_from_slice(&h);
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.buf);
        let t = trailer(crc, self.buf.len() as u64, self.count);
        self.buf.extend_from_slice(&t);
        Ok(self.buf)
    }
}
