//! Reading snapshots: the header, then chunk by chunk, then the trailer.

use crate::id::ObjectId;

use super::super::frame::FrameReader;
use super::super::{valid_page_size, DecodeError, DecodeLimits, FileKind, Location, Problem};
use super::{
    CommitInfo, SnapshotChunk, SnapshotHeader, FRAMING, MAX_CHUNK_BYTES, SNAPSHOT_VERSION,
};

/// Reads the header of a snapshot (the first
/// [`SNAPSHOT_HEADER_LEN`](super::SNAPSHOT_HEADER_LEN) bytes suffice).
pub fn read_snapshot_header(bytes: &[u8]) -> Result<SnapshotHeader, DecodeError> {
    read_header(bytes, &DecodeLimits::DEFAULT)
}

fn read_header(bytes: &[u8], limits: &DecodeLimits) -> Result<SnapshotHeader, DecodeError> {
    let err = |p| FRAMING.header_err(p);
    let mut f = FRAMING.decode_header(bytes)?;
    let page_size = f.u32();
    let object = f.object().ok_or_else(|| {
        err(Problem::Invalid {
            detail: "object id",
        })
    })?;
    let (epoch, seq, commit_time_ms) = (f.u64(), f.u64(), f.u64());
    let (db_size_pages, chunk_pages, chunk_count) = (f.u32(), f.u32(), f.u32());
    if !valid_page_size(page_size) {
        return Err(err(Problem::Invalid {
            detail: "page size is not a power of two from 512 to 65536",
        }));
    }
    let image = u64::from(db_size_pages) * u64::from(page_size);
    if image > limits.max_database_bytes {
        return Err(err(Problem::TooLarge {
            declared: image,
            limit: limits.max_database_bytes,
        }));
    }
    if chunk_pages == 0 {
        return Err(err(Problem::Invalid {
            detail: "chunk size of zero pages",
        }));
    }
    let chunk = u64::from(chunk_pages) * u64::from(page_size);
    let limit = limits.max_block_bytes.min(MAX_CHUNK_BYTES);
    if chunk > limit {
        return Err(err(Problem::TooLarge {
            declared: chunk,
            limit,
        }));
    }
    if db_size_pages.div_ceil(chunk_pages) != chunk_count {
        return Err(err(Problem::Invalid {
            detail: "chunk count does not match the database size",
        }));
    }
    Ok(SnapshotHeader {
        version: SNAPSHOT_VERSION,
        object,
        epoch,
        commit: CommitInfo {
            seq,
            commit_time_ms,
            db_size_pages,
            page_size,
        },
        chunk_pages,
        chunk_count,
    })
}

/// Reads a snapshot chunk by chunk. As an iterator it yields every chunk,
/// then checks the trailer (yielding an error if it is bad), then ends;
/// after an error it ends too.
pub struct SnapshotReader<'a> {
    header: SnapshotHeader,
    frames: FrameReader<'a>,
}

impl<'a> SnapshotReader<'a> {
    /// Checks the header and positions the reader on the first chunk.
    pub fn new(bytes: &'a [u8]) -> Result<SnapshotReader<'a>, DecodeError> {
        SnapshotReader::with_limits(bytes, DecodeLimits::DEFAULT)
    }

    pub fn with_limits(
        bytes: &'a [u8],
        limits: DecodeLimits,
    ) -> Result<SnapshotReader<'a>, DecodeError> {
        let header = read_header(bytes, &limits)?;
        Ok(SnapshotReader {
            frames: FrameReader::new(&FRAMING, bytes, header.chunk_count),
            header,
        })
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Checks that the snapshot belongs to `object` under `epoch`.
    pub fn expect_origin(&self, object: &ObjectId, epoch: u64) -> Result<(), DecodeError> {
        let err = |detail| FRAMING.header_err(Problem::WrongOrigin { detail });
        if &self.header.object != object {
            return Err(err("snapshot belongs to another object"));
        }
        if self.header.epoch != epoch {
            return Err(err("snapshot belongs to another epoch"));
        }
        Ok(())
    }

    /// Decodes the next chunk; `None` once the chunks are done.
    pub fn next_chunk(&mut self) -> Option<Result<SnapshotChunk, DecodeError>> {
        if !self.frames.has_next() {
            return None;
        }
        let r = self.read_chunk();
        if r.is_err() {
            self.frames.fail();
        }
        Some(r)
    }

    /// Reads any chunks left and checks the trailer.
    pub fn finish(mut self) -> Result<SnapshotHeader, DecodeError> {
        while let Some(c) = self.next_chunk() {
            c?;
        }
        self.frames
            .check_trailer()
            .map_err(|p| err(Location::Trailer, p))?;
        Ok(self.header)
    }

    /// Reads, checks and decompresses the next chunk, and moves past it.
    fn read_chunk(&mut self) -> Result<SnapshotChunk, DecodeError> {
        let index = self.frames.index();
        let at = self.frames.location();
        let frame = self.frames.read().map_err(|p| err(at, p))?;
        let found = frame.fields.clone().u32();
        if found != index {
            return Err(err(
                at,
                Problem::NonContiguous {
                    expected: u64::from(index),
                    found: u64::from(found),
                },
            ));
        }
        let c = &self.header.commit;
        let first_page = u64::from(index) * u64::from(self.header.chunk_pages);
        let pages =
            (u64::from(c.db_size_pages) - first_page).min(u64::from(self.header.chunk_pages));
        // Bounded by chunk_pages * page_size, checked against the limits in
        // the header.
        let len = (pages * u64::from(c.page_size)) as usize;
        let offset = first_page * u64::from(c.page_size);
        let data = self.frames.payload(&frame, len).map_err(|p| err(at, p))?;
        self.frames.advance(&frame);
        Ok(SnapshotChunk {
            index,
            offset,
            data,
        })
    }
}

#[cold]
fn err(location: Location, problem: Problem) -> DecodeError {
    DecodeError::new(FileKind::Snapshot, location, None, problem)
}

impl Iterator for SnapshotReader<'_> {
    type Item = Result<SnapshotChunk, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk()
            .or_else(|| Some(Err(err(Location::Trailer, self.frames.end()?))))
    }
}

impl std::iter::FusedIterator for SnapshotReader<'_> {}
