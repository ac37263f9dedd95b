//! What the segment and snapshot formats share: the typed decode and encode
//! errors, the decoder's size limits, a bounds-checked byte reader, and the
//! zstd and CRC32 helpers.
//!
//! Nothing here panics on input bytes: every read is bounds-checked and every
//! size computation is checked for overflow.

use std::fmt;

use crate::error::{Error, ErrorKind};

/// Smallest SQLite page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

/// Magic bytes at the end of every segment and snapshot (in the trailer).
pub const END_MAGIC: [u8; 8] = *b"AMBEREND";
/// Size of the trailer shared by segments and snapshots: body length (u64),
/// item count (u32), file CRC32 (u32), end magic (8 bytes).
pub const TRAILER_LEN: usize = 24;

/// zstd level used by the encoders unless told otherwise.
pub const DEFAULT_LEVEL: i32 = 3;

/// True for the page sizes SQLite can use: powers of two from 512 to 65536.
pub fn valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// Size caps the decoders apply before allocating anything. Declared sizes
/// above them are refused as [`Problem::TooLarge`], so hostile bytes cannot
/// make the decoder allocate more than `max_block_bytes` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed block: one segment record's payload or one
    /// snapshot chunk. The encoders refuse records above the default.
    pub max_block_bytes: u64,
    /// Largest database a record or snapshot may declare
    /// (`db_size_pages * page_size`).
    pub max_database_bytes: u64,
}

impl Limits {
    /// Default: blocks up to 1 GiB, databases up to 1 TiB.
    pub const DEFAULT: Limits = Limits {
        max_block_bytes: 1 << 30,
        max_database_bytes: 1 << 40,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Which file a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Segment,
    Snapshot,
}

/// Where in the file a [`DecodeError`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// The fixed header.
    Header,
    /// Segment record number `n` (0-based).
    Record(u32),
    /// Snapshot chunk number `n` (0-based).
    Chunk(u32),
    /// The trailer (or the bytes where it should be).
    Trailer,
}

/// Which checksum failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Checksum {
    /// CRC32 of the fixed header.
    Header,
    /// CRC32 of a record's or chunk's frame header and compressed bytes.
    Frame,
    /// CRC32 of a record's or chunk's decompressed bytes.
    Payload,
    /// CRC32 of the whole file before the checksum field (trailer).
    File,
}

/// What is wrong with the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file does not start with the expected magic bytes.
    BadMagic,
    /// The format version is not one this build reads.
    UnsupportedVersion { version: u16 },
    /// Flag bits this build does not know are set.
    UnknownFlags { flags: u16 },
    /// The file ends before a structure it declares.
    Truncated { needed: u64, available: u64 },
    /// A stored CRC32 does not match the bytes.
    ChecksumMismatch {
        which: Checksum,
        stored: u32,
        computed: u32,
    },
    /// A sequence number is not the one that must come next.
    NonContiguous { expected: u64, found: u64 },
    /// A commit time is earlier than the one before it.
    TimeWentBackwards { previous: u64, found: u64 },
    /// A declared size exceeds the decoder's limits or the format's.
    TooLarge { declared: u64, limit: u64 },
    /// zstd refused the compressed bytes.
    Decompress { detail: String },
    /// A field holds a value the format does not allow.
    Invalid { detail: &'static str },
    /// Bytes follow the trailer.
    TrailingBytes { count: u64 },
    /// The file belongs to another object or epoch than expected.
    WrongOrigin { detail: &'static str },
}

/// A segment or snapshot failed to decode. Always [`ErrorKind::Corruption`]
/// when converted into the crate's [`Error`].
///
/// For segments, [`DecodeError::last_good_seq`] is the last sequence number
/// that decoded and checked out completely: a restore can stop there on
/// purpose, and must name it when it fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    file: FileKind,
    location: Location,
    last_good_seq: Option<u64>,
    problem: Problem,
}

impl DecodeError {
    #[cold]
    pub(crate) fn new(
        file: FileKind,
        location: Location,
        last_good_seq: Option<u64>,
        problem: Problem,
    ) -> Self {
        DecodeError {
            file,
            location,
            last_good_seq,
            problem,
        }
    }

    pub fn file(&self) -> FileKind {
        self.file
    }

    pub fn location(&self) -> Location {
        self.location
    }

    /// The index of the failing record, if the error is in a record.
    pub fn record_index(&self) -> Option<u32> {
        match self.location {
            Location::Record(i) => Some(i),
            _ => None,
        }
    }

    /// The last sequence number known good: for a segment, the last record
    /// that fully decoded before the failure (or the position the reader was
    /// told the segment continues from). `None` if there is none.
    pub fn last_good_seq(&self) -> Option<u64> {
        self.last_good_seq
    }

    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Corruption
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = match self.file {
            FileKind::Segment => "segment",
            FileKind::Snapshot => "snapshot",
        };
        match self.location {
            Location::Header => write!(f, "{file} header: ")?,
            Location::Record(i) => write!(f, "{file} record {i}: ")?,
            Location::Chunk(i) => write!(f, "{file} chunk {i}: ")?,
            Location::Trailer => write!(f, "{file} trailer: ")?,
        }
        match &self.problem {
            Problem::BadMagic => write!(f, "bad magic bytes")?,
            Problem::UnsupportedVersion { version } => {
                write!(f, "unsupported format version {version}")?
            }
            Problem::UnknownFlags { flags } => write!(f, "unknown flags {flags:#06x}")?,
            Problem::Truncated { needed, available } => write!(
                f,
                "truncated: needs {needed} more bytes, {available} available"
            )?,
            Problem::ChecksumMismatch {
                which,
                stored,
                computed,
            } => write!(
                f,
                "{which:?} CRC32 mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )?,
            Problem::NonContiguous { expected, found } => {
                write!(f, "sequence gap: expected seq {expected}, found {found}")?
            }
            Problem::TimeWentBackwards { previous, found } => write!(
                f,
                "commit time went backwards: {found} ms after {previous} ms"
            )?,
            Problem::TooLarge { declared, limit } => {
                write!(f, "declared size {declared} exceeds the limit {limit}")?
            }
            Problem::Decompress { detail } => write!(f, "zstd: {detail}")?,
            Problem::Invalid { detail } => write!(f, "{detail}")?,
            Problem::TrailingBytes { count } => {
                write!(f, "{count} unexpected bytes after the trailer")?
            }
            Problem::WrongOrigin { detail } => write!(f, "{detail}")?,
        }
        match self.last_good_seq {
            Some(seq) => write!(f, "; last good seq {seq}"),
            None if self.file == FileKind::Segment => write!(f, "; no good record"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for Error {
    #[cold]
    fn from(e: DecodeError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

/// The encoders refused their input. [`ErrorKind::InvalidInput`] when
/// converted, or [`ErrorKind::LimitExceeded`] for sizes and
/// [`ErrorKind::Io`] for a failing reader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Page size is not a power of two from 512 to 65536.
    InvalidPageSize { page_size: u32 },
    /// A page's length differs from the page size.
    PageLength {
        page: u32,
        len: usize,
        page_size: u32,
    },
    /// Page numbers must be strictly increasing, from 1.
    PageOrder { page: u32, previous: u32 },
    /// A page number is 0 or beyond the record's database size.
    PageOutOfRange { page: u32, db_size_pages: u32 },
    /// The sequence number is not the previous one plus one.
    NonContiguous { expected: u64, found: u64 },
    /// The commit time is earlier than the previous record's.
    TimeWentBackwards { previous: u64, found: u64 },
    /// A record, chunk, image or file exceeds what the format allows.
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A segment needs at least one record.
    Empty,
    /// A field holds a value the format does not allow.
    Invalid { detail: &'static str },
    /// zstd failed (out of memory, bad level).
    Compress { detail: String },
    /// Reading the database image failed.
    Io { detail: String },
}

impl EncodeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EncodeError::TooLarge { .. } => ErrorKind::LimitExceeded,
            EncodeError::Io { .. } | EncodeError::Compress { .. } => ErrorKind::Io,
            _ => ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::InvalidPageSize { page_size } => write!(
                f,
                "page size {page_size} is not a power of two from 512 to 65536"
            ),
            EncodeError::PageLength {
                page,
                len,
                page_size,
            } => write!(f, "page {page} has {len} bytes, page size is {page_size}"),
            EncodeError::PageOrder { page, previous } => write!(
                f,
                "page numbers must be strictly increasing: {page} after {previous}"
            ),
            EncodeError::PageOutOfRange {
                page,
                db_size_pages,
            } => write!(
                f,
                "page {page} is outside the database's 1..={db_size_pages} pages"
            ),
            EncodeError::NonContiguous { expected, found } => {
                write!(f, "sequence gap: expected seq {expected}, got {found}")
            }
            EncodeError::TimeWentBackwards { previous, found } => write!(
                f,
                "commit time went backwards: {found} ms after {previous} ms"
            ),
            EncodeError::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} bytes exceeds the limit {limit}")
            }
            EncodeError::Empty => write!(f, "a segment needs at least one record"),
            EncodeError::Invalid { detail } => write!(f, "{detail}"),
            EncodeError::Compress { detail } => write!(f, "zstd: {detail}"),
            EncodeError::Io { detail } => write!(f, "reading the image: {detail}"),
        }
    }
}

impl std::error::Error for EncodeError {}

impl From<EncodeError> for Error {
    #[cold]
    fn from(e: EncodeError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

/// A forward-only, bounds-checked reader over a byte slice. Every read
/// returns `None` instead of panicking when the bytes run out.
#[derive(Debug, Clone)]
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }
}

pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The parsed trailer shared by both formats.
#[derive(Debug)]
pub(crate) struct Trailer {
    pub(crate) count: u32,
}

/// Writes the trailer for a file whose body (everything before the trailer)
/// is `out`.
pub(crate) fn write_trailer(out: &mut Vec<u8>, count: u32) {
    let body_len = out.len() as u64;
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    let crc = crc32(&[out]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
}

/// Reads and checks the trailer that must start at `body_len` and end the
/// file. `err` builds the error with the right file and last-good context.
pub(crate) fn read_trailer(
    bytes: &[u8],
    body_len: usize,
    err: impl Fn(Problem) -> DecodeError,
) -> Result<Trailer, DecodeError> {
    let rest = bytes.len().saturating_sub(body_len);
    if rest < TRAILER_LEN {
        return Err(err(Problem::Truncated {
            needed: TRAILER_LEN as u64,
            available: rest as u64,
        }));
    }
    if rest > TRAILER_LEN {
        return Err(err(Problem::TrailingBytes {
            count: (rest - TRAILER_LEN) as u64,
        }));
    }
    let mut r = ByteReader::new(bytes);
    r.take(body_len);
    let truncated = || {
        err(Problem::Truncated {
            needed: TRAILER_LEN as u64,
            available: 0,
        })
    };
    let stored_len = r.u64().ok_or_else(truncated)?;
    let count = r.u32().ok_or_else(truncated)?;
    let covered = r.pos();
    let stored_crc = r.u32().ok_or_else(truncated)?;
    let magic: [u8; 8] = r.array().ok_or_else(truncated)?;
    if magic != END_MAGIC {
        return Err(err(Problem::BadMagic));
    }
    let computed = crc32(&[bytes.get(..covered).unwrap_or_default()]);
    if computed != stored_crc {
        return Err(err(Problem::ChecksumMismatch {
            which: Checksum::File,
            stored: stored_crc,
            computed,
        }));
    }
    if stored_len != body_len as u64 {
        return Err(err(Problem::Invalid {
            detail: "trailer body length does not match the file",
        }));
    }
    Ok(Trailer { count })
}

/// Compresses `raw` as one zstd frame that records its content size.
pub(crate) fn compress(
    compressor: &mut zstd::bulk::Compressor<'static>,
    raw: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    out.reserve(zstd::compress_bound(raw.len()));
    compressor
        .compress_to_buffer(raw, out)
        .map_err(|e| EncodeError::Compress {
            detail: e.to_string(),
        })?;
    Ok(())
}

pub(crate) fn new_compressor(level: i32) -> Result<zstd::bulk::Compressor<'static>, EncodeError> {
    let mut c = zstd::bulk::Compressor::new(level).map_err(|e| EncodeError::Compress {
        detail: e.to_string(),
    })?;
    // Record the content size in the frame header, so the decoder can check
    // it against the declared size before decompressing anything.
    use zstd::zstd_safe::CParameter;
    c.set_parameter(CParameter::ContentSizeFlag(true))
        .and_then(|_| c.set_parameter(CParameter::ChecksumFlag(false)))
        .map_err(|e| EncodeError::Compress {
            detail: e.to_string(),
        })?;
    Ok(c)
}

/// Decompresses `src`, which must be exactly one zstd frame declaring a
/// content size of exactly `raw_len`, into a fresh buffer of `raw_len`
/// bytes. The caller has already checked `raw_len` against the limits, so
/// this allocates at most that.
pub(crate) fn decompress_exact(
    d: &mut Option<zstd::bulk::Decompressor<'static>>,
    src: &[u8],
    raw_len: usize,
) -> Result<Vec<u8>, Problem> {
    match zstd::zstd_safe::find_frame_compressed_size(src) {
        Ok(n) if n == src.len() => {}
        Ok(_) => {
            return Err(Problem::Invalid {
                detail: "compressed bytes are not exactly one zstd frame",
            })
        }
        Err(code) => {
            return Err(Problem::Decompress {
                detail: zstd::zstd_safe::get_error_name(code).to_string(),
            })
        }
    }
    match zstd::zstd_safe::get_frame_content_size(src) {
        Ok(Some(n)) if n == raw_len as u64 => {}
        _ => {
            return Err(Problem::Invalid {
                detail: "zstd frame content size differs from the declared size",
            })
        }
    }
    let d = match d {
        Some(d) => d,
        None => d.insert(
            zstd::bulk::Decompressor::new().map_err(|e| Problem::Decompress {
                detail: e.to_string(),
            })?,
        ),
    };
    let mut out = Vec::with_capacity(raw_len);
    let n = d
        .decompress_to_buffer(src, &mut out)
        .map_err(|e| Problem::Decompress {
            detail: e.to_string(),
        })?;
    if n != raw_len || out.len() != raw_len {
        return Err(Problem::Invalid {
            detail: "decompressed size differs from the declared size",
        });
    }
    Ok(out)
}

/// Lowercase hex of a byte slice.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes() {
        for ps in [512, 1024, 4096, 65536] {
            assert!(valid_page_size(ps));
        }
        for ps in [0, 1, 256, 4095, 131072, u32::MAX] {
            assert!(!valid_page_size(ps));
        }
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = ByteReader::new(&[1, 2, 3]);
        assert_eq!(r.u16(), Some(0x0201));
        assert_eq!(r.u16(), None);
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.take(1), Some(&[3u8][..]));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn zstd_round_trip_and_exact_size() {
        let mut c = new_compressor(DEFAULT_LEVEL).unwrap();
        let raw = vec![7u8; 10_000];
        let mut out = Vec::new();
        compress(&mut c, &raw, &mut out).unwrap();
        let mut d = None;
        assert_eq!(decompress_exact(&mut d, &out, raw.len()).unwrap(), raw);
        assert!(decompress_exact(&mut d, &out, raw.len() - 1).is_err());
        assert!(decompress_exact(&mut d, &out, raw.len() + 1).is_err());
        let mut two = out.clone();
        two.extend_from_slice(&out);
        assert!(decompress_exact(&mut d, &two, raw.len()).is_err());
        assert!(decompress_exact(&mut d, &out[..out.len() - 1], raw.len()).is_err());
        assert!(decompress_exact(&mut d, &[], 0).is_err());
        assert_eq!(decompress_exact(&mut d, &out, raw.len()).unwrap(), raw);
    }

    #[test]
    fn trailer_round_trip() {
        let mut f = b"body".to_vec();
        write_trailer(&mut f, 7);
        let err = |p| DecodeError::new(FileKind::Segment, Location::Trailer, None, p);
        assert_eq!(read_trailer(&f, 4, err).unwrap().count, 7);
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 1;
            assert!(read_trailer(&g, 4, err).is_err(), "flip at {i}");
        }
        assert!(read_trailer(&f[..f.len() - 1], 4, err).is_err());
        let mut longer = f.clone();
        longer.push(0);
        assert!(matches!(
            read_trailer(&longer, 4, err).unwrap_err().problem(),
            Problem::TrailingBytes { count: 1 }
        ));
    }

    #[test]
    fn errors_convert_to_crate_kinds() {
        let e = DecodeError::new(
            FileKind::Segment,
            Location::Record(3),
            Some(41),
            Problem::BadMagic,
        );
        assert_eq!(e.record_index(), Some(3));
        let msg = e.to_string();
        assert!(
            msg.contains("record 3") && msg.contains("last good seq 41"),
            "{msg}"
        );
        assert_eq!(Error::from(e).kind(), ErrorKind::Corruption);
        assert_eq!(
            Error::from(EncodeError::Empty).kind(),
            ErrorKind::InvalidInput
        );
    }
}
