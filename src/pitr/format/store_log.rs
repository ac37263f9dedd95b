//! The shared log's two small formats (byte tables in docs/format.md,
//! "Store segment" and "Object index"):
//!
//! - A **store segment** packs the pending commits of many objects into one
//!   bucket object. It is a header with a table of contents (one entry per
//!   object and epoch: where its bytes are and which commits they hold),
//!   followed by one ordinary per-object segment (`segment.rs`) per entry.
//!   A reader that wants one object fetches the header with a ranged GET,
//!   then only that object's bytes; the per-object segment carries its own
//!   CRCs, so nothing else of the file has to be read or trusted.
//! - An **object index** lists, for one object and epoch, where its
//!   segments sit inside store segments of one stream, so a restore finds
//!   them without reading other objects' tables of contents.

use crate::id::ObjectId;

use super::error::{DecodeError, FileKind, Location, Problem};

/// A store segment starts with these bytes.
pub const STORE_SEGMENT_MAGIC: &[u8; 8] = b"AMBRSLOG";
/// An object index starts with these bytes.
pub const INDEX_MAGIC: &[u8; 8] = b"AMBRSIDX";
/// Version of both formats.
pub const STORE_LOG_VERSION: u16 = 1;
/// Fixed part of a store segment's header, before its entries.
pub const STORE_HEADER_FIXED: usize = 48;
/// One table-of-contents entry.
pub const TOC_ENTRY_LEN: usize = 72;
/// Fixed part of an object index, before its entries.
pub const INDEX_FIXED: usize = 88;
/// One index entry.
pub const INDEX_ENTRY_LEN: usize = 40;
/// Most entries either table may declare: far above any real segment
/// (one entry per object per upload), low enough that a hostile count
/// cannot make a reader allocate much.
pub const MAX_ENTRIES: u32 = 1 << 20;

/// Names one writer's sequence of store segments: 16 random bytes, chosen
/// when a store opens its bucket, written as 32 hex digits in keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub [u8; 16]);

impl StreamId {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Exactly 32 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<StreamId> {
        if s.len() != 32 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(StreamId(out))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// One object's part of a store segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocEntry {
    pub object: ObjectId,
    pub epoch: u64,
    pub first: u64,
    pub last: u64,
    /// Byte offset of its per-object segment in the store segment.
    pub offset: u64,
    pub len: u64,
}

/// A store segment's header, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreToc {
    pub stream: StreamId,
    pub gen: u64,
    /// Writer's wall clock when it built the segment, ms since the epoch.
    pub written_ms: u64,
    pub entries: Vec<TocEntry>,
}

impl StoreToc {
    /// Length of the header and table: where the first entry's bytes start.
    pub fn header_len(&self) -> u64 {
        header_len(self.entries.len())
    }
}

fn header_len(entries: usize) -> u64 {
    (STORE_HEADER_FIXED + entries * TOC_ENTRY_LEN + 4) as u64
}

/// One object's part, to be packed.
pub struct PackedPart {
    pub object: ObjectId,
    pub epoch: u64,
    pub first: u64,
    pub last: u64,
    /// A complete per-object segment (`SegmentWriter::finish`).
    pub bytes: Vec<u8>,
}

/// Packs `parts` into one store segment; returns its bytes and table.
pub fn encode_store_segment(
    stream: StreamId,
    gen: u64,
    written_ms: u64,
    parts: &[PackedPart],
) -> (Vec<u8>, StoreToc) {
    let mut offset = header_len(parts.len());
    let entries: Vec<TocEntry> = parts
        .iter()
        .map(|p| {
            let e = TocEntry {
                object: p.object,
                epoch: p.epoch,
                first: p.first,
                last: p.last,
                offset,
                len: p.bytes.len() as u64,
            };
            offset += e.len;
            e
        })
        .collect();
    let mut out = Vec::with_capacity(offset as usize);
    out.extend_from_slice(STORE_SEGMENT_MAGIC);
    out.extend_from_slice(&STORE_LOG_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&stream.0);
    out.extend_from_slice(&gen.to_le_bytes());
    out.extend_from_slice(&written_ms.to_le_bytes());
    for e in &entries {
        out.extend_from_slice(e.object.as_bytes());
        for v in [e.epoch, e.first, e.last, e.offset, e.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    for p in parts {
        out.extend_from_slice(&p.bytes);
    }
    let toc = StoreToc {
        stream,
        gen,
        written_ms,
        entries,
    };
    (out, toc)
}

fn err(file: FileKind, location: Location, problem: Problem) -> DecodeError {
    DecodeError::new(file, location, None, problem)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("two bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

fn id_at(b: &[u8], at: usize) -> ObjectId {
    ObjectId::from_bytes(b[at..at + 32].try_into().expect("32 bytes"))
}

/// Checks magic, version and flags, and returns the entry count.
fn fixed(
    bytes: &[u8],
    file: FileKind,
    magic: &[u8; 8],
    fixed_len: usize,
) -> Result<u32, DecodeError> {
    let h = |p| err(file, Location::Header, p);
    if bytes.len() < fixed_len {
        return Err(h(Problem::Truncated {
            needed: fixed_len as u64,
            available: bytes.len() as u64,
        }));
    }
    if &bytes[..8] != magic {
        return Err(h(Problem::BadMagic));
    }
    let version = u16_at(bytes, 8);
    if version != STORE_LOG_VERSION {
        return Err(h(Problem::UnsupportedVersion { version }));
    }
    let flags = u16_at(bytes, 10);
    if flags != 0 {
        return Err(h(Problem::UnknownFlags { flags }));
    }
    let count = u32_at(bytes, 12);
    if count > MAX_ENTRIES {
        return Err(h(Problem::TooLarge {
            declared: count as u64,
            limit: MAX_ENTRIES as u64,
        }));
    }
    Ok(count)
}

fn check_crc(bytes: &[u8], end: usize, file: FileKind) -> Result<(), DecodeError> {
    let stored = u32_at(bytes, end);
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(err(
            file,
            Location::Header,
            Problem::ChecksumMismatch {
                which: super::Checksum::Header,
                stored,
                computed,
            },
        ));
    }
    Ok(())
}

/// How many leading bytes of a store segment hold its header and table.
/// `head` needs only the first 48 bytes.
pub fn store_header_len(head: &[u8]) -> Result<u64, DecodeError> {
    let n = fixed(
        head,
        FileKind::StoreSegment,
        STORE_SEGMENT_MAGIC,
        STORE_HEADER_FIXED,
    )?;
    Ok(header_len(n as usize))
}

/// Decodes a store segment's header and table from its first
/// [`store_header_len`] bytes (more may follow; they are not read).
pub fn read_store_toc(bytes: &[u8]) -> Result<StoreToc, DecodeError> {
    let file = FileKind::StoreSegment;
    let need = store_header_len(bytes)? as usize;
    if bytes.len() < need {
        return Err(err(
            file,
            Location::Header,
            Problem::Truncated {
                needed: need as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    check_crc(bytes, need - 4, file)?;
    let count = (need - 4 - STORE_HEADER_FIXED) / TOC_ENTRY_LEN;
    let stream = StreamId(bytes[16..32].try_into().expect("16 bytes"));
    let mut entries = Vec::with_capacity(count);
    let mut expect_offset = need as u64;
    for i in 0..count {
        let at = STORE_HEADER_FIXED + i * TOC_ENTRY_LEN;
        let e = TocEntry {
            object: id_at(bytes, at),
            epoch: u64_at(bytes, at + 32),
            first: u64_at(bytes, at + 40),
            last: u64_at(bytes, at + 48),
            offset: u64_at(bytes, at + 56),
            len: u64_at(bytes, at + 64),
        };
        let bad = |detail| err(file, Location::Entry(i as u32), Problem::Invalid { detail });
        if e.first > e.last {
            return Err(bad("first commit after last"));
        }
        if e.offset != expect_offset || e.len == 0 {
            return Err(bad("entries are not packed back to back"));
        }
        expect_offset = e
            .offset
            .checked_add(e.len)
            .ok_or_else(|| bad("entry runs past 2^64"))?;
        entries.push(e);
    }
    Ok(StoreToc {
        stream,
        gen: u64_at(bytes, 32),
        written_ms: u64_at(bytes, 40),
        entries,
    })
}

/// Where one run of an object's commits sits in a store segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub gen: u64,
    pub offset: u64,
    pub len: u64,
    pub first: u64,
    pub last: u64,
}

/// An object index: every run of `object`'s commits of `epoch` in store
/// segments `from_gen..=through_gen` of `stream`, none left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    pub object: ObjectId,
    pub epoch: u64,
    pub stream: StreamId,
    pub from_gen: u64,
    pub through_gen: u64,
    pub entries: Vec<IndexEntry>,
}

impl ObjectIndex {
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.first().map(|e| e.first)
    }

    pub fn last_seq(&self) -> Option<u64> {
        self.entries.last().map(|e| e.last)
    }
}

pub fn encode_index(ix: &ObjectIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_FIXED + ix.entries.len() * INDEX_ENTRY_LEN + 4);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&STORE_LOG_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(ix.entries.len() as u32).to_le_bytes());
    out.extend_from_slice(ix.object.as_bytes());
    out.extend_from_slice(&ix.epoch.to_le_bytes());
    out.extend_from_slice(&ix.stream.0);
    out.extend_from_slice(&ix.from_gen.to_le_bytes());
    out.extend_from_slice(&ix.through_gen.to_le_bytes());
    for e in &ix.entries {
        for v in [e.gen, e.offset, e.len, e.first, e.last] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

pub fn decode_index(bytes: &[u8]) -> Result<ObjectIndex, DecodeError> {
    let file = FileKind::Index;
    let count = fixed(bytes, file, INDEX_MAGIC, INDEX_FIXED)? as usize;
    let need = INDEX_FIXED + count * INDEX_ENTRY_LEN + 4;
    if bytes.len() != need {
        let p = if bytes.len() < need {
            Problem::Truncated {
                needed: need as u64,
                available: bytes.len() as u64,
            }
        } else {
            Problem::TrailingBytes {
                count: (bytes.len() - need) as u64,
            }
        };
        return Err(err(file, Location::Trailer, p));
    }
    check_crc(bytes, need - 4, file)?;
    let from_gen = u64_at(bytes, 72);
    let through_gen = u64_at(bytes, 80);
    let bad = |i: usize, detail| err(file, Location::Entry(i as u32), Problem::Invalid { detail });
    if from_gen > through_gen {
        return Err(err(
            file,
            Location::Header,
            Problem::Invalid {
                detail: "from_gen after through_gen",
            },
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = INDEX_FIXED + i * INDEX_ENTRY_LEN;
        let e = IndexEntry {
            gen: u64_at(bytes, at),
            offset: u64_at(bytes, at + 8),
            len: u64_at(bytes, at + 16),
            first: u64_at(bytes, at + 24),
            last: u64_at(bytes, at + 32),
        };
        if e.first > e.last || e.len == 0 {
            return Err(bad(i, "empty run"));
        }
        if e.gen < from_gen || e.gen > through_gen {
            return Err(bad(i, "entry outside the index's generations"));
        }
        if let Some(p) = entries.last() {
            let p: &IndexEntry = p;
            if e.gen <= p.gen || e.first <= p.last {
                return Err(bad(i, "entries out of order"));
            }
        }
        entries.push(e);
    }
    Ok(ObjectIndex {
        object: id_at(bytes, 16),
        epoch: u64_at(bytes, 48),
        stream: StreamId(bytes[56..72].try_into().expect("16 bytes")),
        from_gen,
        through_gen,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 32])
    }

    #[test]
    fn store_segment_round_trips_and_is_pinned() {
        let parts = [
            PackedPart {
                object: id(1),
                epoch: 2,
                first: 3,
                last: 4,
                bytes: vec![0xaa; 5],
            },
            PackedPart {
                object: id(9),
                epoch: 0,
                first: 7,
                last: 7,
                bytes: vec![0xbb; 2],
            },
        ];
        let (bytes, toc) = encode_store_segment(StreamId([0x11; 16]), 5, 1_000, &parts);
        assert_eq!(toc.header_len(), 48 + 2 * 72 + 4);
        assert_eq!(bytes.len() as u64, toc.header_len() + 7);
        assert_eq!(store_header_len(&bytes[..48]).unwrap(), toc.header_len());
        let back = read_store_toc(&bytes[..toc.header_len() as usize]).unwrap();
        assert_eq!(back, toc);
        let e = back.entries[1];
        assert_eq!(
            &bytes[e.offset as usize..(e.offset + e.len) as usize],
            &[0xbb; 2]
        );
        // The bytes docs/format.md shows; a change here is a format change.
        assert_eq!(&bytes[..16], b"AMBRSLOG\x01\x00\x00\x00\x02\x00\x00\x00");
        assert_eq!(
            crc32fast::hash(&bytes),
            0xa7f7_b4d3,
            "{:08x}",
            crc32fast::hash(&bytes)
        );
    }

    #[test]
    fn index_round_trips_and_is_pinned() {
        let ix = ObjectIndex {
            object: id(4),
            epoch: 1,
            stream: StreamId([0x22; 16]),
            from_gen: 3,
            through_gen: 9,
            entries: vec![
                IndexEntry {
                    gen: 3,
                    offset: 200,
                    len: 50,
                    first: 1,
                    last: 2,
                },
                IndexEntry {
                    gen: 8,
                    offset: 120,
                    len: 60,
                    first: 3,
                    last: 3,
                },
            ],
        };
        let bytes = encode_index(&ix);
        assert_eq!(bytes.len(), 88 + 2 * 40 + 4);
        assert_eq!(decode_index(&bytes).unwrap(), ix);
        assert_eq!(
            crc32fast::hash(&bytes),
            0x2144_df1c,
            "{:08x}",
            crc32fast::hash(&bytes)
        );
    }

    #[test]
    fn damaged_tables_are_refused_without_panics() {
        let parts = [PackedPart {
            object: id(1),
            epoch: 0,
            first: 1,
            last: 1,
            bytes: vec![1; 3],
        }];
        let (bytes, toc) = encode_store_segment(StreamId([3; 16]), 1, 2, &parts);
        let head = &bytes[..toc.header_len() as usize];
        for i in 0..head.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = head.to_vec();
                b[i] ^= bit;
                assert!(read_store_toc(&b).is_err(), "flip at {i}");
            }
        }
        for n in 0..head.len() {
            assert!(read_store_toc(&head[..n]).is_err());
        }
        let ix = encode_index(&ObjectIndex {
            object: id(2),
            epoch: 0,
            stream: StreamId([5; 16]),
            from_gen: 0,
            through_gen: 0,
            entries: vec![IndexEntry {
                gen: 0,
                offset: 52,
                len: 9,
                first: 1,
                last: 4,
            }],
        });
        for i in 0..ix.len() {
            let mut b = ix.clone();
            b[i] ^= 0x40;
            assert!(decode_index(&b).is_err(), "flip at {i}");
        }
        for n in 0..ix.len() {
            assert!(decode_index(&ix[..n]).is_err());
        }
        // A hostile count is refused before anything is allocated.
        let mut huge = ix.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_index(&huge).unwrap_err().problem(),
            Problem::TooLarge { .. }
        ));
    }

    #[test]
    fn stream_ids_round_trip() {
        let s = StreamId([0xab; 16]);
        assert_eq!(StreamId::from_hex(&s.to_hex()), Some(s));
        assert_eq!(StreamId::from_hex("AB"), None);
        assert_eq!(StreamId::from_hex(&s.to_hex().to_uppercase()), None);
    }
}
