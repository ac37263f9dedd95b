//! The typed errors of the segment and snapshot codecs: what was wrong
//! (`Problem`), where (`FileKind`, `Location`), and for segments the last
//! sequence number that was good, so a restore can stop there on purpose.
//! Errors from zstd and from I/O are kept whole as `source()`.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::error::{Error, ErrorKind};

/// Which file a [`DecodeError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    Segment,
    Snapshot,
    /// A store segment's header and table of contents (`*.sseg`).
    StoreSegment,
    /// An object's index of its records in store segments (`*.idx`).
    Index,
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
    /// Table-of-contents or index entry number `n` (0-based).
    Entry(u32),
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
    /// zstd refused the compressed bytes; `source` is its error.
    Decompress { source: IoCause },
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
            FileKind::StoreSegment => "store segment",
            FileKind::Index => "object index",
        };
        match self.location {
            Location::Header => write!(f, "{file} header: ")?,
            Location::Record(i) => write!(f, "{file} record {i}: ")?,
            Location::Chunk(i) => write!(f, "{file} chunk {i}: ")?,
            Location::Entry(i) => write!(f, "{file} entry {i}: ")?,
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
            Problem::Decompress { source } => write!(f, "zstd: {source}")?,
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

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Decompress { source } => Some(source.get()),
            _ => None,
        }
    }
}

impl From<DecodeError> for Error {
    #[cold]
    fn from(e: DecodeError) -> Self {
        Error::with_source(e.kind(), e)
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
    Compress { source: IoCause },
    /// Reading the database image failed.
    Io { source: IoCause },
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
            EncodeError::Compress { source } => write!(f, "zstd: {source}"),
            EncodeError::Io { source } => write!(f, "reading the image: {source}"),
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EncodeError::Compress { source } | EncodeError::Io { source } => Some(source.get()),
            _ => None,
        }
    }
}

impl From<EncodeError> for Error {
    #[cold]
    fn from(e: EncodeError) -> Self {
        Error::with_source(e.kind(), e)
    }
}

/// An I/O error kept whole, to be the `source()` of the error that carries
/// it (zstd reports its failures as `io::Error`s too). Shared, so the errors
/// stay `Clone`; equal when kind and message are, so they stay `Eq`.
#[derive(Clone, Debug)]
pub struct IoCause(Arc<io::Error>);

impl IoCause {
    pub fn get(&self) -> &io::Error {
        &self.0
    }
}

impl From<io::Error> for IoCause {
    fn from(e: io::Error) -> Self {
        IoCause(Arc::new(e))
    }
}

impl PartialEq for IoCause {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for IoCause {}

impl fmt::Display for IoCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn causes_are_kept_as_sources() {
        use std::error::Error as _;
        let cause = || IoCause::from(io::Error::other("Unknown frame descriptor"));
        let e = DecodeError::new(
            FileKind::Snapshot,
            Location::Chunk(2),
            None,
            Problem::Decompress { source: cause() },
        );
        assert_eq!(
            e.to_string(),
            "snapshot chunk 2: zstd: Unknown frame descriptor"
        );
        let io = e.source().unwrap().downcast_ref::<io::Error>().unwrap();
        assert_eq!(io.to_string(), "Unknown frame descriptor");
        // The crate's error keeps the whole DecodeError, which keeps the
        // zstd error.
        let err = Error::from(e.clone());
        assert_eq!(err.message(), e.to_string());
        let kept = err.source().unwrap().downcast_ref::<DecodeError>().unwrap();
        assert_eq!(kept, &e);
        assert!(kept.source().is_some());
        let enc = EncodeError::Io { source: cause() };
        assert_eq!(enc.kind(), ErrorKind::Io);
        assert!(enc.source().unwrap().is::<io::Error>());
        let err = Error::from(enc.clone());
        assert_eq!(
            err.source().unwrap().downcast_ref::<EncodeError>(),
            Some(&enc)
        );
    }
}
