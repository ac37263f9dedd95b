//! Reading segments: the header, then record by record.

use crate::id::ObjectId;

use super::super::error::{
    crc32, decompress_exact, hex, read_trailer, valid_page_size, ByteReader, Checksum, DecodeError,
    FileKind, Limits, Location, Problem,
};
use super::{
    CommitInfo, Record, RecordMeta, SegmentHeader, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC, SEGMENT_VERSION,
};

/// Reads the header of a segment (the first [`SEGMENT_HEADER_LEN`] bytes
/// suffice: a ranged GET can fetch just them).
pub fn read_segment_header(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
    let err = |p| DecodeError::new(FileKind::Segment, Location::Header, None, p);
    let mut r = ByteReader::new(bytes);
    let truncated = || {
        err(Problem::Truncated {
            needed: SEGMENT_HEADER_LEN as u64,
            available: bytes.len() as u64,
        })
    };
    let magic: [u8; 8] = r.array().ok_or_else(truncated)?;
    if magic != SEGMENT_MAGIC {
        return Err(err(Problem::BadMagic));
    }
    let version = r.u16().ok_or_else(truncated)?;
    if version != SEGMENT_VERSION {
        return Err(err(Problem::UnsupportedVersion { version }));
    }
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(truncated());
    }
    let stored = u32::from_le_bytes([bytes[88], bytes[89], bytes[90], bytes[91]]);
    let computed = crc32(&[&bytes[..88]]);
    if stored != computed {
        return Err(err(Problem::ChecksumMismatch {
            which: Checksum::Header,
            stored,
            computed,
        }));
    }
    let flags = r.u16().ok_or_else(truncated)?;
    if flags != 0 {
        return Err(err(Problem::UnknownFlags { flags }));
    }
    let record_count = r.u32().ok_or_else(truncated)?;
    let object: [u8; 32] = r.array().ok_or_else(truncated)?;
    let object = ObjectId::from_hex(&hex(&object)).map_err(|_| {
        err(Problem::Invalid {
            detail: "object id",
        })
    })?;
    let h = SegmentHeader {
        version,
        object,
        record_count,
        epoch: r.u64().ok_or_else(truncated)?,
        first_seq: r.u64().ok_or_else(truncated)?,
        last_seq: r.u64().ok_or_else(truncated)?,
        first_time_ms: r.u64().ok_or_else(truncated)?,
        last_time_ms: r.u64().ok_or_else(truncated)?,
    };
    if h.record_count == 0 {
        return Err(err(Problem::Invalid {
            detail: "segment declares no records",
        }));
    }
    if h.last_seq.checked_sub(h.first_seq) != Some(u64::from(h.record_count) - 1) {
        return Err(err(Problem::Invalid {
            detail: "record count does not match the sequence range",
        }));
    }
    if h.last_time_ms < h.first_time_ms {
        return Err(err(Problem::TimeWentBackwards {
            previous: h.first_time_ms,
            found: h.last_time_ms,
        }));
    }
    Ok(h)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Records,
    Done,
    Failed,
}

/// Reads a segment record by record, checking each one as it goes. As an
/// iterator it yields every record, then checks the trailer (yielding an
/// error if it is bad), then ends; after an error it ends too.
///
/// A restore that stops at a target sequence number simply stops iterating:
/// every record it got has passed both of its CRCs.
pub struct SegmentReader<'a> {
    bytes: &'a [u8],
    header: SegmentHeader,
    limits: Limits,
    pos: usize,
    index: u32,
    /// (seq, commit time) of the last good record, or of the point this
    /// segment continues from.
    prev: Option<(u64, u64)>,
    state: State,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl<'a> SegmentReader<'a> {
    /// Checks the header and positions the reader on the first record.
    pub fn new(bytes: &'a [u8]) -> Result<SegmentReader<'a>, DecodeError> {
        SegmentReader::with_limits(bytes, Limits::DEFAULT)
    }

    pub fn with_limits(bytes: &'a [u8], limits: Limits) -> Result<SegmentReader<'a>, DecodeError> {
        let header = read_segment_header(bytes)?;
        Ok(SegmentReader {
            bytes,
            header,
            limits,
            pos: SEGMENT_HEADER_LEN,
            index: 0,
            prev: None,
            state: State::Records,
            decompressor: None,
        })
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Declares that this segment continues a log whose last applied commit
    /// is `seq` at `time_ms`: the first record must be `seq + 1`, no earlier
    /// in time, and errors name `seq` as the last good point until a record
    /// of this segment has decoded. Call before reading any record.
    pub fn continue_from(mut self, seq: u64, time_ms: u64) -> Result<Self, DecodeError> {
        let err = |p| DecodeError::new(FileKind::Segment, Location::Header, Some(seq), p);
        if self.index != 0 {
            return Err(err(Problem::Invalid {
                detail: "continue_from after records were read",
            }));
        }
        let expected = seq.checked_add(1).ok_or_else(|| {
            err(Problem::Invalid {
                detail: "sequence number overflow",
            })
        })?;
        if self.header.first_seq != expected {
            return Err(err(Problem::NonContiguous {
                expected,
                found: self.header.first_seq,
            }));
        }
        if self.header.first_time_ms < time_ms {
            return Err(err(Problem::TimeWentBackwards {
                previous: time_ms,
                found: self.header.first_time_ms,
            }));
        }
        self.prev = Some((seq, time_ms));
        Ok(self)
    }

    /// Checks that the segment belongs to `object`'s log under `epoch` (as
    /// its key says), so a segment copied to a wrong key is not applied.
    pub fn expect_origin(&self, object: &ObjectId, epoch: u64) -> Result<(), DecodeError> {
        let err = |detail| {
            DecodeError::new(
                FileKind::Segment,
                Location::Header,
                None,
                Problem::WrongOrigin { detail },
            )
        };
        if &self.header.object != object {
            return Err(err("segment belongs to another object"));
        }
        if self.header.epoch != epoch {
            return Err(err("segment belongs to another epoch"));
        }
        Ok(())
    }

    /// Sequence number of the last record that decoded and checked out.
    pub fn last_good_seq(&self) -> Option<u64> {
        self.prev.map(|p| p.0)
    }

    /// Decodes the next record; `None` once the records are done (the
    /// trailer is then checked by the next call, or by [`Self::finish`]).
    pub fn next_record(&mut self) -> Option<Result<Record, DecodeError>> {
        if !self.has_record() {
            return None;
        }
        let r = self.read_frame().and_then(|f| {
            let (meta, end) = (f.meta, f.end);
            self.decode_frame(f).map(|rec| (rec, meta, end))
        });
        Some(self.settle(r))
    }

    /// Checks the next record's frame CRC and returns its fields without
    /// decompressing its pages (to skip records a snapshot already covers,
    /// or to map a time to a sequence number).
    pub fn skip_record(&mut self) -> Option<Result<RecordMeta, DecodeError>> {
        if !self.has_record() {
            return None;
        }
        let r = self.read_frame().map(|f| (f.meta, f.meta, f.end));
        Some(self.settle(r))
    }

    /// Checks any records left (frame CRCs only) and the trailer.
    pub fn finish(mut self) -> Result<SegmentHeader, DecodeError> {
        while let Some(r) = self.skip_record() {
            r?;
        }
        match self.state {
            State::Records => self.check_trailer()?,
            State::Done => {}
            State::Failed => {
                return Err(self.err(
                    Location::Trailer,
                    Problem::Invalid {
                        detail: "finish after a failed read",
                    },
                ))
            }
        }
        Ok(self.header)
    }

    fn has_record(&self) -> bool {
        self.state == State::Records && self.index < self.header.record_count
    }

    /// Records the outcome of reading one record: on success the reader
    /// moves past it, on failure it stops for good.
    fn settle<T>(
        &mut self,
        r: Result<(T, RecordMeta, usize), DecodeError>,
    ) -> Result<T, DecodeError> {
        match r {
            Ok((v, meta, end)) => {
                self.prev = Some((meta.commit.seq, meta.commit.commit_time_ms));
                self.index += 1;
                self.pos = end;
                Ok(v)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    fn err(&self, location: Location, problem: Problem) -> DecodeError {
        DecodeError::new(FileKind::Segment, location, self.prev.map(|p| p.0), problem)
    }

    fn check_trailer(&mut self) -> Result<(), DecodeError> {
        let result = read_trailer(self.bytes, self.pos, |p| self.err(Location::Trailer, p))
            .and_then(|t| {
                if t.count == self.header.record_count {
                    Ok(())
                } else {
                    Err(self.err(
                        Location::Trailer,
                        Problem::Invalid {
                            detail: "trailer record count differs from the header",
                        },
                    ))
                }
            });
        self.state = if result.is_ok() {
            State::Done
        } else {
            State::Failed
        };
        result
    }

    /// Reads and checks the next record's frame (header fields, lengths,
    /// frame CRC, continuity, sizes) without decompressing it.
    fn read_frame(&self) -> Result<Frame<'a>, DecodeError> {
        let at = Location::Record(self.index);
        let mut r = ByteReader::new(self.bytes);
        r.take(self.pos);
        let available = r.remaining() as u64;
        let Some(h) = r.take(RECORD_HEADER_LEN) else {
            return Err(self.err(
                at,
                Problem::Truncated {
                    needed: RECORD_HEADER_LEN as u64,
                    available,
                },
            ));
        };
        let mut hr = ByteReader::new(h);
        let seq = hr.u64().unwrap_or_default();
        let commit_time_ms = hr.u64().unwrap_or_default();
        let db_size_pages = hr.u32().unwrap_or_default();
        let page_size = hr.u32().unwrap_or_default();
        let page_count = hr.u32().unwrap_or_default();
        let compressed_len = hr.u32().unwrap_or_default();
        let raw_crc = hr.u32().unwrap_or_default();
        let frame_crc = hr.u32().unwrap_or_default();
        let available = r.remaining() as u64;
        let Some(compressed) = r.take(compressed_len as usize) else {
            return Err(self.err(
                at,
                Problem::Truncated {
                    needed: u64::from(compressed_len),
                    available,
                },
            ));
        };
        let computed = crc32(&[&h[..36], compressed]);
        if computed != frame_crc {
            return Err(self.err(
                at,
                Problem::ChecksumMismatch {
                    which: Checksum::Frame,
                    stored: frame_crc,
                    computed,
                },
            ));
        }
        // Cannot overflow: the header checked first_seq + count - 1.
        let expected = self.header.first_seq + u64::from(self.index);
        if seq != expected {
            return Err(self.err(
                at,
                Problem::NonContiguous {
                    expected,
                    found: seq,
                },
            ));
        }
        if let Some((_, prev_time)) = self.prev {
            if commit_time_ms < prev_time {
                return Err(self.err(
                    at,
                    Problem::TimeWentBackwards {
                        previous: prev_time,
                        found: commit_time_ms,
                    },
                ));
            }
        }
        let is_first = self.index == 0;
        let is_last = self.index + 1 == self.header.record_count;
        if (is_first && commit_time_ms != self.header.first_time_ms)
            || (is_last && commit_time_ms != self.header.last_time_ms)
            || commit_time_ms > self.header.last_time_ms
        {
            return Err(self.err(
                at,
                Problem::Invalid {
                    detail: "commit time outside the header's time range",
                },
            ));
        }
        let commit = CommitInfo {
            seq,
            commit_time_ms,
            db_size_pages,
            page_size,
        };
        let raw_len = self.check_sizes(at, &commit, page_count)?;
        Ok(Frame {
            meta: RecordMeta { commit, page_count },
            compressed,
            raw_crc,
            raw_len,
            end: r.pos(),
        })
    }

    /// Decompresses a checked frame and checks its payload.
    fn decode_frame(&mut self, f: Frame<'a>) -> Result<Record, DecodeError> {
        let at = Location::Record(self.index);
        let mut raw = decompress_exact(&mut self.decompressor, f.compressed, f.raw_len)
            .map_err(|p| self.err(at, p))?;
        let computed = crc32(&[&raw]);
        if computed != f.raw_crc {
            return Err(self.err(
                at,
                Problem::ChecksumMismatch {
                    which: Checksum::Payload,
                    stored: f.raw_crc,
                    computed,
                },
            ));
        }
        let c = f.meta.commit;
        let data_len = f.meta.page_count as usize * c.page_size as usize;
        let mut numbers = Vec::with_capacity(f.meta.page_count as usize);
        let mut previous = 0u32;
        for n in raw.get(data_len..).unwrap_or_default().chunks_exact(4) {
            let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]);
            if n <= previous || n > c.db_size_pages {
                return Err(self.err(
                    at,
                    Problem::Invalid {
                        detail: "page numbers not increasing within the database size",
                    },
                ));
            }
            numbers.push(n);
            previous = n;
        }
        raw.truncate(data_len);
        Ok(Record {
            commit: c,
            numbers,
            data: raw,
        })
    }

    /// Checks the declared sizes; returns the payload length.
    fn check_sizes(
        &self,
        at: Location,
        c: &CommitInfo,
        page_count: u32,
    ) -> Result<usize, DecodeError> {
        if !valid_page_size(c.page_size) {
            return Err(self.err(
                at,
                Problem::Invalid {
                    detail: "page size is not a power of two from 512 to 65536",
                },
            ));
        }
        if c.db_size_pages == 0 || page_count > c.db_size_pages {
            return Err(self.err(
                at,
                Problem::Invalid {
                    detail: "page count exceeds the database size",
                },
            ));
        }
        let db = u64::from(c.db_size_pages) * u64::from(c.page_size);
        if db > self.limits.max_database_bytes {
            return Err(self.err(
                at,
                Problem::TooLarge {
                    declared: db,
                    limit: self.limits.max_database_bytes,
                },
            ));
        }
        let raw = u64::from(page_count) * (u64::from(c.page_size) + 4);
        let limit = self.limits.max_block_bytes.min(usize::MAX as u64);
        if raw > limit {
            return Err(self.err(
                at,
                Problem::TooLarge {
                    declared: raw,
                    limit,
                },
            ));
        }
        Ok(raw as usize)
    }
}

/// A record's frame, checked but not yet decompressed.
struct Frame<'a> {
    meta: RecordMeta,
    compressed: &'a [u8],
    raw_crc: u32,
    raw_len: usize,
    /// Offset just past the record.
    end: usize,
}

impl Iterator for SegmentReader<'_> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(r) = self.next_record() {
            return Some(r);
        }
        if self.state == State::Records {
            if let Err(e) = self.check_trailer() {
                return Some(Err(e));
            }
        }
        None
    }
}

impl std::iter::FusedIterator for SegmentReader<'_> {}
