//! The snapshot format: a whole database file image as of one commit, cut
//! into fixed-size chunks that are zstd-compressed and CRC-checked one by
//! one. Byte tables are in `docs/format.md`.
//!
//! ```text
//! header (88 bytes) | chunk 0 | chunk 1 | ... | trailer (24 bytes)
//! ```
//!
//! Chunks are independent zstd frames with their sizes in the clear, so a
//! restore can decode them as they stream in (or on several threads) and
//! memory stays bounded by the chunk size, not the database size. Each chunk
//! carries a CRC32 of its frame header and compressed bytes (checked before
//! zstd sees them) and a CRC32 of its decompressed bytes; the trailer's
//! CRC32 covers the whole file before it.

use std::io::Write;

use crate::id::ObjectId;

use super::error::{
    compress, crc32, decompress_exact, hex, new_compressor, read_trailer, valid_page_size,
    ByteReader, Checksum, DecodeError, EncodeError, FileKind, Limits, Location, Problem,
    DEFAULT_LEVEL, END_MAGIC,
};
use super::segment::CommitInfo;

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

/// Writes a snapshot to `out` as the image is fed in, one chunk at a time.
/// It implements [`Write`], so `std::io::copy(&mut db_file, &mut writer)`
/// works; [`SnapshotWriter::finish`] then checks that exactly
/// `db_size_pages * page_size` bytes came in and writes the trailer.
pub struct SnapshotWriter<W: Write> {
    out: W,
    hasher: crc32fast::Hasher,
    written: u64,
    image_len: u64,
    fed: u64,
    chunk_len: usize,
    chunk_count: u32,
    index: u32,
    pending: Vec<u8>,
    compressed: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
}

impl<W: Write> SnapshotWriter<W> {
    /// Starts a snapshot of `object` (writer `epoch`) as of `at`, and writes
    /// its header.
    pub fn new(
        out: W,
        object: &ObjectId,
        epoch: u64,
        at: CommitInfo,
        options: SnapshotOptions,
    ) -> Result<SnapshotWriter<W>, EncodeError> {
        if !valid_page_size(at.page_size) {
            return Err(EncodeError::InvalidPageSize {
                page_size: at.page_size,
            });
        }
        let image_len = u64::from(at.db_size_pages) * u64::from(at.page_size);
        let limit = Limits::DEFAULT.max_database_bytes;
        if image_len > limit {
            return Err(EncodeError::TooLarge {
                what: "database image",
                size: image_len,
                limit,
            });
        }
        let chunk_bytes = u64::from(options.chunk_bytes).min(MAX_CHUNK_BYTES);
        let chunk_pages = (chunk_bytes / u64::from(at.page_size)).max(1) as u32;
        let chunk_count = at.db_size_pages.div_ceil(chunk_pages);
        let mut h = Vec::with_capacity(SNAPSHOT_HEADER_LEN);
        h.extend_from_slice(&SNAPSHOT_MAGIC);
        h.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&at.page_size.to_le_bytes());
        h.extend_from_slice(object.as_bytes());
        h.extend_from_slice(&epoch.to_le_bytes());
        h.extend_from_slice(&at.seq.to_le_bytes());
        h.extend_from_slice(&at.commit_time_ms.to_le_bytes());
        h.extend_from_slice(&at.db_size_pages.to_le_bytes());
        h.extend_from_slice(&chunk_pages.to_le_bytes());
        h.extend_from_slice(&chunk_count.to_le_bytes());
        let crc = crc32(&[&h]);
        h.extend_from_slice(&crc.to_le_bytes());
        let mut w = SnapshotWriter {
            out,
            hasher: crc32fast::Hasher::new(),
            written: 0,
            image_len,
            fed: 0,
            chunk_len: chunk_pages as usize * at.page_size as usize,
            chunk_count,
            index: 0,
            pending: Vec::new(),
            compressed: Vec::new(),
            compressor: new_compressor(options.level)?,
        };
        w.emit(&h)?;
        Ok(w)
    }

    /// Feeds the next bytes of the database image.
    pub fn write_image(&mut self, mut bytes: &[u8]) -> Result<(), EncodeError> {
        let fed = self.fed.saturating_add(bytes.len() as u64);
        if fed > self.image_len {
            return Err(EncodeError::TooLarge {
                what: "database image",
                size: fed,
                limit: self.image_len,
            });
        }
        self.fed = fed;
        while !bytes.is_empty() {
            let take = (self.chunk_len - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == self.chunk_len {
                self.flush_chunk()?;
            }
        }
        Ok(())
    }

    /// Writes the last chunk and the trailer; returns the output.
    pub fn finish(mut self) -> Result<W, EncodeError> {
        if self.fed != self.image_len {
            return Err(EncodeError::Invalid {
                detail: "image shorter than db_size_pages * page_size",
            });
        }
        if !self.pending.is_empty() {
            self.flush_chunk()?;
        }
        if self.index != self.chunk_count {
            return Err(EncodeError::Invalid {
                detail: "chunk count differs from the header",
            });
        }
        let mut t = Vec::with_capacity(24);
        t.extend_from_slice(&self.written.to_le_bytes());
        t.extend_from_slice(&self.chunk_count.to_le_bytes());
        self.hasher.update(&t);
        let crc = self.hasher.clone().finalize();
        t.extend_from_slice(&crc.to_le_bytes());
        t.extend_from_slice(&END_MAGIC);
        self.out.write_all(&t).map_err(io_err)?;
        self.out.flush().map_err(io_err)?;
        Ok(self.out)
    }

    fn flush_chunk(&mut self) -> Result<(), EncodeError> {
        compress(&mut self.compressor, &self.pending, &mut self.compressed)?;
        let len = u32::try_from(self.compressed.len()).map_err(|_| EncodeError::TooLarge {
            what: "compressed chunk",
            size: self.compressed.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        let mut h = [0u8; CHUNK_HEADER_LEN];
        h[0..4].copy_from_slice(&self.index.to_le_bytes());
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h[8..12].copy_from_slice(&crc32(&[&self.pending]).to_le_bytes());
        let frame_crc = crc32(&[&h[..12], &self.compressed]);
        h[12..16].copy_from_slice(&frame_crc.to_le_bytes());
        self.emit(&h)?;
        let compressed = std::mem::take(&mut self.compressed);
        let r = self.emit(&compressed);
        self.compressed = compressed;
        r?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        self.out.write_all(bytes).map_err(io_err)
    }
}

impl<W: Write> Write for SnapshotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_image(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn io_err(e: std::io::Error) -> EncodeError {
    EncodeError::Io {
        detail: e.to_string(),
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
    decode_snapshot_with(bytes, Limits::DEFAULT)
}

/// [`decode_snapshot`] with explicit limits.
pub fn decode_snapshot_with(bytes: &[u8], limits: Limits) -> Result<Snapshot, DecodeError> {
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
        header: reader.header,
        image,
    })
}

/// Reads the header of a snapshot (the first [`SNAPSHOT_HEADER_LEN`] bytes
/// suffice).
pub fn read_snapshot_header(bytes: &[u8]) -> Result<SnapshotHeader, DecodeError> {
    read_header(bytes, &Limits::DEFAULT)
}

fn read_header(bytes: &[u8], limits: &Limits) -> Result<SnapshotHeader, DecodeError> {
    let err = |p| DecodeError::new(FileKind::Snapshot, Location::Header, None, p);
    let truncated = || {
        err(Problem::Truncated {
            needed: SNAPSHOT_HEADER_LEN as u64,
            available: bytes.len() as u64,
        })
    };
    let mut r = ByteReader::new(bytes);
    let magic: [u8; 8] = r.array().ok_or_else(truncated)?;
    if magic != SNAPSHOT_MAGIC {
        return Err(err(Problem::BadMagic));
    }
    let version = r.u16().ok_or_else(truncated)?;
    if version != SNAPSHOT_VERSION {
        return Err(err(Problem::UnsupportedVersion { version }));
    }
    let covered = bytes.get(..84).ok_or_else(truncated)?;
    let stored = bytes
        .get(84..88)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or_else(truncated)?;
    let computed = crc32(&[covered]);
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
    let page_size = r.u32().ok_or_else(truncated)?;
    let object: [u8; 32] = r.array().ok_or_else(truncated)?;
    let object = ObjectId::from_hex(&hex(&object)).map_err(|_| {
        err(Problem::Invalid {
            detail: "object id",
        })
    })?;
    let epoch = r.u64().ok_or_else(truncated)?;
    let seq = r.u64().ok_or_else(truncated)?;
    let commit_time_ms = r.u64().ok_or_else(truncated)?;
    let db_size_pages = r.u32().ok_or_else(truncated)?;
    let chunk_pages = r.u32().ok_or_else(truncated)?;
    let chunk_count = r.u32().ok_or_else(truncated)?;
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
        version,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Chunks,
    Done,
    Failed,
}

/// Reads a snapshot chunk by chunk. As an iterator it yields every chunk,
/// then checks the trailer (yielding an error if it is bad), then ends;
/// after an error it ends too.
pub struct SnapshotReader<'a> {
    bytes: &'a [u8],
    header: SnapshotHeader,
    pos: usize,
    index: u32,
    state: State,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl<'a> SnapshotReader<'a> {
    /// Checks the header and positions the reader on the first chunk.
    pub fn new(bytes: &'a [u8]) -> Result<SnapshotReader<'a>, DecodeError> {
        SnapshotReader::with_limits(bytes, Limits::DEFAULT)
    }

    pub fn with_limits(bytes: &'a [u8], limits: Limits) -> Result<SnapshotReader<'a>, DecodeError> {
        Ok(SnapshotReader {
            header: read_header(bytes, &limits)?,
            bytes,
            pos: SNAPSHOT_HEADER_LEN,
            index: 0,
            state: State::Chunks,
            decompressor: None,
        })
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Checks that the snapshot belongs to `object` under `epoch`.
    pub fn expect_origin(&self, object: &ObjectId, epoch: u64) -> Result<(), DecodeError> {
        let err = |detail| {
            DecodeError::new(
                FileKind::Snapshot,
                Location::Header,
                None,
                Problem::WrongOrigin { detail },
            )
        };
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
        if self.state != State::Chunks || self.index >= self.header.chunk_count {
            return None;
        }
        let r = self.read_chunk();
        match &r {
            Ok(_) => self.index += 1,
            Err(_) => self.state = State::Failed,
        }
        Some(r)
    }

    /// Reads any chunks left and checks the trailer.
    pub fn finish(mut self) -> Result<SnapshotHeader, DecodeError> {
        while let Some(c) = self.next_chunk() {
            c?;
        }
        match self.state {
            State::Chunks => self.check_trailer()?,
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

    fn err(&self, location: Location, problem: Problem) -> DecodeError {
        DecodeError::new(FileKind::Snapshot, location, None, problem)
    }

    fn check_trailer(&mut self) -> Result<(), DecodeError> {
        let result = read_trailer(self.bytes, self.pos, |p| self.err(Location::Trailer, p))
            .and_then(|t| {
                if t.count == self.header.chunk_count {
                    Ok(())
                } else {
                    Err(self.err(
                        Location::Trailer,
                        Problem::Invalid {
                            detail: "trailer chunk count differs from the header",
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

    fn read_chunk(&mut self) -> Result<SnapshotChunk, DecodeError> {
        let at = Location::Chunk(self.index);
        let mut r = ByteReader::new(self.bytes);
        r.take(self.pos);
        let available = r.remaining() as u64;
        let Some(h) = r.take(CHUNK_HEADER_LEN) else {
            return Err(self.err(
                at,
                Problem::Truncated {
                    needed: CHUNK_HEADER_LEN as u64,
                    available,
                },
            ));
        };
        let mut hr = ByteReader::new(h);
        let index = hr.u32().unwrap_or_default();
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
        let computed = crc32(&[&h[..12], compressed]);
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
        if index != self.index {
            return Err(self.err(
                at,
                Problem::NonContiguous {
                    expected: u64::from(self.index),
                    found: u64::from(index),
                },
            ));
        }
        let c = &self.header.commit;
        let first_page = u64::from(self.index) * u64::from(self.header.chunk_pages);
        let pages =
            (u64::from(c.db_size_pages) - first_page).min(u64::from(self.header.chunk_pages));
        // Bounded by chunk_pages * page_size, checked against the limits in
        // the header.
        let raw_len = (pages * u64::from(c.page_size)) as usize;
        let data = decompress_exact(&mut self.decompressor, compressed, raw_len)
            .map_err(|p| self.err(at, p))?;
        let computed = crc32(&[&data]);
        if computed != raw_crc {
            return Err(self.err(
                at,
                Problem::ChecksumMismatch {
                    which: Checksum::Payload,
                    stored: raw_crc,
                    computed,
                },
            ));
        }
        self.pos = r.pos();
        Ok(SnapshotChunk {
            index,
            offset: first_page * u64::from(c.page_size),
            data,
        })
    }
}

impl Iterator for SnapshotReader<'_> {
    type Item = Result<SnapshotChunk, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(c) = self.next_chunk() {
            return Some(c);
        }
        if self.state == State::Chunks {
            if let Err(e) = self.check_trailer() {
                return Some(Err(e));
            }
        }
        None
    }
}

impl std::iter::FusedIterator for SnapshotReader<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitr::format::error::TRAILER_LEN;

    fn object() -> ObjectId {
        ObjectId::from_name(&[4; 32], "snapshot-tests").unwrap()
    }

    fn at(db_size_pages: u32, page_size: u32) -> CommitInfo {
        CommitInfo {
            seq: 77,
            commit_time_ms: 1_700_000_000_000,
            db_size_pages,
            page_size,
        }
    }

    fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i / 512) as u8 ^ (i as u8 & 3)).collect()
    }

    fn encode_with(pages: u32, chunk_bytes: u32) -> (Vec<u8>, Vec<u8>) {
        let img = image(pages as usize * 512);
        let opts = SnapshotOptions {
            chunk_bytes,
            ..SnapshotOptions::default()
        };
        let mut w = SnapshotWriter::new(Vec::new(), &object(), 3, at(pages, 512), opts).unwrap();
        // Feed in odd-sized pieces through io::Write.
        for piece in img.chunks(700) {
            w.write_all(piece).unwrap();
        }
        (w.finish().unwrap(), img)
    }

    #[test]
    fn round_trip_across_chunk_boundaries() {
        for (pages, chunk) in [
            (0, 4096),
            (1, 4096),
            (8, 4096),
            (9, 4096),
            (10, 100),
            (3, 1 << 30),
        ] {
            let (bytes, img) = encode_with(pages, chunk);
            let snap = decode_snapshot(&bytes).unwrap();
            assert_eq!(snap.image, img, "pages {pages} chunk {chunk}");
            assert_eq!(snap.header.commit, at(pages, 512));
            assert_eq!(snap.header.epoch, 3);
            assert_eq!(snap.header.image_len(), img.len() as u64);
            assert_eq!(read_snapshot_header(&bytes).unwrap(), snap.header);
        }
        let one = encode_snapshot(&object(), 0, at(2, 4096), &image(8192)).unwrap();
        assert_eq!(decode_snapshot(&one).unwrap().image, image(8192));
    }

    #[test]
    fn chunks_carry_their_offsets() {
        let (bytes, img) = encode_with(9, 4096);
        let mut r = SnapshotReader::new(&bytes).unwrap();
        assert_eq!(r.header().chunk_pages, 8);
        assert_eq!(r.header().chunk_count, 2);
        let c0 = r.next_chunk().unwrap().unwrap();
        let c1 = r.next_chunk().unwrap().unwrap();
        assert_eq!((c0.index, c0.offset, c0.data.len()), (0, 0, 4096));
        assert_eq!((c1.index, c1.offset, c1.data.len()), (1, 4096, 512));
        assert_eq!(c1.data, img[4096..]);
        assert!(r.next_chunk().is_none());
        assert!(r.expect_origin(&object(), 3).is_ok());
        assert!(r.expect_origin(&object(), 4).is_err());
        assert_eq!(r.finish().unwrap().chunk_count, 2);
    }

    #[test]
    fn writer_refuses_wrong_image_sizes() {
        let mut w = SnapshotWriter::new(
            Vec::new(),
            &object(),
            0,
            at(2, 512),
            SnapshotOptions::default(),
        )
        .unwrap();
        w.write_image(&[0; 512]).unwrap();
        assert!(matches!(
            w.write_image(&[0; 513]),
            Err(EncodeError::TooLarge { .. })
        ));
        assert!(matches!(w.finish(), Err(EncodeError::Invalid { .. })));
        assert!(matches!(
            SnapshotWriter::new(
                Vec::new(),
                &object(),
                0,
                at(1, 100),
                SnapshotOptions::default()
            ),
            Err(EncodeError::InvalidPageSize { page_size: 100 })
        ));
    }

    #[test]
    fn damage_is_located() {
        let (bytes, _) = encode_with(20, 4096);
        let mut bad = bytes.clone();
        let at = bad.len() - TRAILER_LEN - 2;
        bad[at] ^= 1;
        let mut r = SnapshotReader::new(&bad).unwrap();
        assert!(r.next().unwrap().is_ok());
        assert!(r.next().unwrap().is_ok());
        let e = r.next().unwrap().unwrap_err();
        assert_eq!(e.location(), Location::Chunk(2));
        assert!(matches!(
            e.problem(),
            Problem::ChecksumMismatch {
                which: Checksum::Frame,
                ..
            }
        ));
        assert!(r.next().is_none());
        assert_eq!(crate::Error::from(e).kind(), crate::ErrorKind::Corruption);
        let small = Limits {
            max_block_bytes: 1024,
            ..Limits::DEFAULT
        };
        assert!(matches!(
            decode_snapshot_with(&bytes, small).unwrap_err().problem(),
            Problem::TooLarge {
                declared: 4096,
                limit: 1024
            }
        ));
        let tiny = Limits {
            max_database_bytes: 512,
            ..Limits::DEFAULT
        };
        assert!(matches!(
            decode_snapshot_with(&bytes, tiny).unwrap_err().problem(),
            Problem::TooLarge { .. }
        ));
        assert!(matches!(
            decode_snapshot(&bytes[..bytes.len() - 1])
                .unwrap_err()
                .problem(),
            Problem::Truncated { .. }
        ));
    }
}
