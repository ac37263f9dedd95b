//! The typed errors of the segment and snapshot codecs: what was wrong
//! (`Problem`), where (`FileKind`, `Location`), and for segments the last
//! sequence number that was good, so a restore can stop there on purpose.

use std::fmt;

use crate::error::{Error, ErrorKind};

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
}
