//! Reading segments: the header, then record by record, then the trailer.

use crate::id::ObjectId;

use super::super::frame::{Frame, FrameReader};
use super::super::{valid_page_size, DecodeError, DecodeLimits, FileKind, Location, Problem};
use super::{CommitInfo, Record, RecordMeta, SegmentHeader, FRAMING, SEGMENT_VERSION};

/// Reads the header of a segment (the first
/// [`SEGMENT_HEADER_LEN`](super::SEGMENT_HEADER_LEN) bytes suffice: a ranged
/// GET can fetch just them).
pub fn read_segment_header(bytes: &[u8]) -> Result<SegmentHeader, DecodeError> {
    let err = |p| FRAMING.header_err(p);
    let mut f = FRAMING.decode_header(bytes)?;
    let record_count = f.u32();
    let object = f.object().ok_or_else(|| {
        err(Problem::Invalid {
            detail: "object id",
        })
    })?;
    let h = SegmentHeader {
        version: SEGMENT_VERSION,
        object,
        record_count,
        epoch: f.u64(),
        first_seq: f.u64(),
        last_seq: f.u64(),
        first_time_ms: f.u64(),
        last_time_ms: f.u64(),
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

/// Reads a segment record by record, checking each one as it goes. As an
/// iterator it yields every record, then checks the trailer (yielding an
/// error if it is bad), then ends; after an error it ends too.
///
/// A restore that stops at a target sequence number simply stops iterating:
/// every record it got has passed both of its CRCs.
pub struct SegmentReader<'a> {
    header: SegmentHeader,
    limits: DecodeLimits,
    frames: FrameReader<'a>,
    /// (seq, commit time) of the last good record, or of the point this
    /// segment continues from.
    prev: Option<(u64, u64)>,
}

/// A record's frame with its fields checked, not yet decompressed.
struct RecordFrame<'a> {
    meta: RecordMeta,
    payload_len: usize,
    frame: Frame<'a>,
}

impl<'a> SegmentReader<'a> {
    /// Checks the header and positions the reader on the first record.
    pub fn new(bytes: &'a [u8]) -> Result<SegmentReader<'a>, DecodeError> {
        SegmentReader::with_limits(bytes, DecodeLimits::DEFAULT)
    }

    pub fn with_limits(
        bytes: &'a [u8],
        limits: DecodeLimits,
    ) -> Result<SegmentReader<'a>, DecodeError> {
        let header = read_segment_header(bytes)?;
        Ok(SegmentReader {
            frames: FrameReader::new(&FRAMING, bytes, header.record_count),
            header,
            limits,
            prev: None,
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
        if self.frames.index() != 0 {
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
        let err = |detail| FRAMING.header_err(Problem::WrongOrigin { detail });
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
        self.step(|r, f| r.decode_payload(f))
    }

    /// Checks the next record's frame CRC and returns its fields without
    /// decompressing its pages (to skip records a snapshot already covers,
    /// or to map a time to a sequence number).
    pub fn skip_record(&mut self) -> Option<Result<RecordMeta, DecodeError>> {
        self.step(|_, f| Ok(f.meta))
    }

    /// Checks any records left (frame CRCs only) and the trailer.
    pub fn finish(mut self) -> Result<SegmentHeader, DecodeError> {
        while let Some(r) = self.skip_record() {
            r?;
        }
        self.frames
            .check_trailer()
            .map_err(|p| self.err(Location::Trailer, p))?;
        Ok(self.header)
    }

    /// Reads the next record's frame, then `decode`s it: on success the
    /// reader moves past it, on failure it stops for good.
    fn step<T>(
        &mut self,
        decode: impl FnOnce(&mut Self, &RecordFrame<'a>) -> Result<T, DecodeError>,
    ) -> Option<Result<T, DecodeError>> {
        if !self.frames.has_next() {
            return None;
        }
        let r = self
            .read_frame()
            .and_then(|f| decode(self, &f).map(|v| (v, f)));
        Some(match r {
            Ok((v, f)) => {
                self.prev = Some((f.meta.commit.seq, f.meta.commit.commit_time_ms));
                self.frames.advance(&f.frame);
                Ok(v)
            }
            Err(e) => {
                self.frames.fail();
                Err(e)
            }
        })
    }

    #[cold]
    fn err(&self, location: Location, problem: Problem) -> DecodeError {
        DecodeError::new(FileKind::Segment, location, self.last_good_seq(), problem)
    }

    /// Reads the next record's frame and checks its fields (continuity,
    /// times, sizes) without decompressing it.
    fn read_frame(&self) -> Result<RecordFrame<'a>, DecodeError> {
        let at = self.frames.location();
        let err = |p| self.err(at, p);
        let frame = self.frames.read().map_err(err)?;
        let mut f = frame.fields.clone();
        let commit = CommitInfo {
            seq: f.u64(),
            commit_time_ms: f.u64(),
            db_size_pages: f.u32(),
            page_size: f.u32(),
        };
        let page_count = f.u32();
        // Cannot overflow: the header checked first_seq + count - 1.
        let expected = self.header.first_seq + u64::from(self.frames.index());
        if commit.seq != expected {
            return Err(err(Problem::NonContiguous {
                expected,
                found: commit.seq,
            }));
        }
        let time = commit.commit_time_ms;
        if let Some((_, previous)) = self.prev {
            if time < previous {
                return Err(err(Problem::TimeWentBackwards {
                    previous,
                    found: time,
                }));
            }
        }
        let is_first = self.frames.index() == 0;
        let is_last = self.frames.index() + 1 == self.header.record_count;
        if (is_first && time != self.header.first_time_ms)
            || (is_last && time != self.header.last_time_ms)
            || time > self.header.last_time_ms
        {
            return Err(err(Problem::Invalid {
                detail: "commit time outside the header's time range",
            }));
        }
        let payload_len = self.check_sizes(&commit, page_count).map_err(err)?;
        Ok(RecordFrame {
            meta: RecordMeta { commit, page_count },
            payload_len,
            frame,
        })
    }

    /// Decompresses a checked frame and splits its payload into pages.
    fn decode_payload(&mut self, f: &RecordFrame<'a>) -> Result<Record, DecodeError> {
        let at = self.frames.location();
        let mut raw = self
            .frames
            .payload(&f.frame, f.payload_len)
            .map_err(|p| self.err(at, p))?;
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

    /// Checks the declared sizes against the format and the limits; returns
    /// the payload length.
    fn check_sizes(&self, c: &CommitInfo, page_count: u32) -> Result<usize, Problem> {
        if !valid_page_size(c.page_size) {
            return Err(Problem::Invalid {
                detail: "page size is not a power of two from 512 to 65536",
            });
        }
        if c.db_size_pages == 0 || page_count > c.db_size_pages {
            return Err(Problem::Invalid {
                detail: "page count exceeds the database size",
            });
        }
        let db = u64::from(c.db_size_pages) * u64::from(c.page_size);
        if db > self.limits.max_database_bytes {
            return Err(Problem::TooLarge {
                declared: db,
                limit: self.limits.max_database_bytes,
            });
        }
        let raw = u64::from(page_count) * (u64::from(c.page_size) + 4);
        let limit = self.limits.max_block_bytes.min(usize::MAX as u64);
        if raw > limit {
            return Err(Problem::TooLarge {
                declared: raw,
                limit,
            });
        }
        Ok(raw as usize)
    }
}

impl Iterator for SegmentReader<'_> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().or_else(|| {
            let p = self.frames.end()?;
            Some(Err(self.err(Location::Trailer, p)))
        })
    }
}

impl std::iter::FusedIterator for SegmentReader<'_> {}
