//! The framing segments and snapshots share, byte for byte:
//!
//! ```text
//! header:  magic (8) | version (2) | flags (2) | fields | header_crc (4)
//! frame:   fields | compressed_len (4) | payload_crc (4) | frame_crc (4) | zstd frame
//! trailer: body_len (8) | count (4) | file_crc (4) | "AMBEREND"
//! ```
//!
//! Every CRC32 covers the bytes before it in its structure: the frame CRC
//! also covers the compressed bytes, so damage is caught before zstd sees
//! them and a frame can be checked without decompressing it; the payload
//! CRC covers the decompressed bytes, so faults in compression,
//! decompression or memory are caught too; the file CRC covers everything
//! before it.
//!
//! Checks run in a fixed order (magic, version, header CRC, then fields), so
//! a header that fails its CRC is never interpreted. The tests in
//! `tests/pitr_format.rs` pin the bytes and the errors.

use crate::id::{hex, ObjectId};

use super::error::{Checksum, DecodeError, EncodeError, FileKind, Location, Problem};

/// Magic bytes at the end of every segment and snapshot (in the trailer).
pub(crate) const END_MAGIC: [u8; 8] = *b"AMBEREND";
/// Size of the trailer.
pub(crate) const TRAILER_LEN: usize = 24;
/// What every frame header ends with: compressed_len, payload_crc, frame_crc.
const FRAME_TAIL_LEN: usize = 12;

/// One format's framing constants.
#[derive(Debug)]
pub(crate) struct Framing {
    pub(crate) kind: FileKind,
    pub(crate) magic: [u8; 8],
    pub(crate) version: u16,
    /// The whole file header, CRC included.
    pub(crate) header_len: usize,
    /// A frame header, tail included.
    pub(crate) frame_header_len: usize,
}

impl Framing {
    /// A header error (no record has decoded yet, so no last good seq).
    #[cold]
    pub(crate) fn header_err(&self, problem: Problem) -> DecodeError {
        DecodeError::new(self.kind, Location::Header, None, problem)
    }

    /// The file header: magic, version, flags (0), `fields`, then the CRC32
    /// of all of that.
    pub(crate) fn encode_header(&self, fields: &[&[u8]]) -> Vec<u8> {
        let mut h = Vec::with_capacity(self.header_len);
        h.extend_from_slice(&self.magic);
        h.extend_from_slice(&self.version.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        for f in fields {
            h.extend_from_slice(f);
        }
        let crc = crc32(&[&h]);
        h.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(h.len(), self.header_len);
        h
    }

    /// Checks the magic, version, header CRC and flags, in that order, and
    /// returns the fields between the flags and the CRC. Only the first
    /// `header_len` bytes are read.
    pub(crate) fn decode_header<'a>(&self, bytes: &'a [u8]) -> Result<Fields<'a>, DecodeError> {
        let truncated = || {
            self.header_err(Problem::Truncated {
                needed: self.header_len as u64,
                available: bytes.len() as u64,
            })
        };
        if bytes.get(..8).ok_or_else(truncated)? != self.magic {
            return Err(self.header_err(Problem::BadMagic));
        }
        let version = Fields::new(bytes.get(8..10).ok_or_else(truncated)?).u16();
        if version != self.version {
            return Err(self.header_err(Problem::UnsupportedVersion { version }));
        }
        let header = bytes.get(..self.header_len).ok_or_else(truncated)?;
        let (covered, stored) = header.split_at(self.header_len - 4);
        let stored = Fields::new(stored).u32();
        let computed = crc32(&[covered]);
        if stored != computed {
            return Err(self.header_err(Problem::ChecksumMismatch {
                which: Checksum::Header,
                stored,
                computed,
            }));
        }
        let mut fields = Fields::new(covered.get(10..).unwrap_or_default());
        let flags = fields.u16();
        if flags != 0 {
            return Err(self.header_err(Problem::UnknownFlags { flags }));
        }
        Ok(fields)
    }
}

/// Reads little-endian fields from bytes whose length the framing has
/// already checked. A read past the end (a layout bug, never bad input)
/// yields zeros instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        match self.bytes.split_first_chunk::<N>() {
            Some((a, rest)) => {
                self.bytes = rest;
                *a
            }
            None => {
                self.bytes = &[];
                [0; N]
            }
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// An object id (32 raw bytes).
    pub(crate) fn object(&mut self) -> Option<ObjectId> {
        ObjectId::from_hex(&hex(&self.array::<32>())).ok()
    }
}

pub(crate) fn crc32(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// The trailer of a file whose body (everything before the trailer) is
/// `body_len` bytes with CRC32 state `body_crc`.
pub(crate) fn trailer(
    mut body_crc: crc32fast::Hasher,
    body_len: u64,
    count: u32,
) -> [u8; TRAILER_LEN] {
    let mut t = [0u8; TRAILER_LEN];
    t[..8].copy_from_slice(&body_len.to_le_bytes());
    t[8..12].copy_from_slice(&count.to_le_bytes());
    body_crc.update(&t[..12]);
    t[12..16].copy_from_slice(&body_crc.finalize().to_le_bytes());
    t[16..].copy_from_slice(&END_MAGIC);
    t
}

/// Compresses payloads and frames them.
pub(crate) struct FrameWriter {
    compressor: zstd::bulk::Compressor<'static>,
    header: Vec<u8>,
    compressed: Vec<u8>,
}

impl FrameWriter {
    pub(crate) fn new(level: i32) -> Result<FrameWriter, EncodeError> {
        let compress_err = |e: std::io::Error| EncodeError::Compress { source: e.into() };
        let mut c = zstd::bulk::Compressor::new(level).map_err(compress_err)?;
        // Record the content size in the zstd frame header, so the decoder
        // can check it against the declared size before decompressing.
        use zstd::zstd_safe::CParameter;
        c.set_parameter(CParameter::ContentSizeFlag(true))
            .and_then(|_| c.set_parameter(CParameter::ChecksumFlag(false)))
            .map_err(compress_err)?;
        Ok(FrameWriter {
            compressor: c,
            header: Vec::new(),
            compressed: Vec::new(),
        })
    }

    /// Frames `payload` after the format's `fields`: returns the frame
    /// header and the compressed bytes, to be written back to back. `what`
    /// names the frame in a size error.
    pub(crate) fn frame(
        &mut self,
        fields: &[&[u8]],
        payload: &[u8],
        what: &'static str,
    ) -> Result<(&[u8], &[u8]), EncodeError> {
        self.compressed.clear();
        self.compressed.reserve(zstd::compress_bound(payload.len()));
        self.compressor
            .compress_to_buffer(payload, &mut self.compressed)
            .map_err(|e| EncodeError::Compress { source: e.into() })?;
        let len = u32::try_from(self.compressed.len()).map_err(|_| EncodeError::TooLarge {
            what,
            size: self.compressed.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        self.header.clear();
        for f in fields {
            self.header.extend_from_slice(f);
        }
        self.header.extend_from_slice(&len.to_le_bytes());
        self.header
            .extend_from_slice(&crc32(&[payload]).to_le_bytes());
        let frame_crc = crc32(&[&self.header, &self.compressed]);
        self.header.extend_from_slice(&frame_crc.to_le_bytes());
        Ok((&self.header, &self.compressed))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Frames,
    Done,
    Failed,
}

/// A walk over the frames of a file whose header checked out, then over its
/// trailer. After a failed read it stays failed, so no caller can step past
/// damage. Errors are [`Problem`]s: the format adds the location and its
/// last good point.
pub(crate) struct FrameReader<'a> {
    bytes: &'a [u8],
    kind: FileKind,
    frame_header_len: usize,
    count: u32,
    pos: usize,
    index: u32,
    state: State,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

/// A frame whose frame CRC checked out; its payload is still compressed.
pub(crate) struct Frame<'a> {
    /// The format's fields: the frame header without its tail.
    pub(crate) fields: Fields<'a>,
    compressed: &'a [u8],
    payload_crc: u32,
    /// Offset just past the frame.
    end: usize,
}

impl<'a> FrameReader<'a> {
    /// `count` frames, starting right after the header.
    pub(crate) fn new(framing: &Framing, bytes: &'a [u8], count: u32) -> Self {
        FrameReader {
            bytes,
            kind: framing.kind,
            frame_header_len: framing.frame_header_len,
            count,
            pos: framing.header_len,
            index: 0,
            state: State::Frames,
            decompressor: None,
        }
    }

    /// Frames read so far, which is the index of the next one.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Where the next frame is, for errors.
    pub(crate) fn location(&self) -> Location {
        match self.kind {
            FileKind::Segment => Location::Record(self.index),
            FileKind::Snapshot => Location::Chunk(self.index),
            FileKind::StoreSegment | FileKind::Index => Location::Entry(self.index),
        }
    }

    /// True while frames are left and no read has failed.
    pub(crate) fn has_next(&self) -> bool {
        self.state == State::Frames && self.index < self.count
    }

    /// Reads the next frame and checks its frame CRC; the format checks its
    /// fields, then calls [`Self::payload`] or not, then [`Self::advance`]
    /// or [`Self::fail`].
    pub(crate) fn read(&self) -> Result<Frame<'a>, Problem> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let Some((header, rest)) = rest.split_at_checked(self.frame_header_len) else {
            return Err(Problem::Truncated {
                needed: self.frame_header_len as u64,
                available: rest.len() as u64,
            });
        };
        let (fields, tail) = header.split_at(self.frame_header_len - FRAME_TAIL_LEN);
        let mut tail = Fields::new(tail);
        let (compressed_len, payload_crc, frame_crc) = (tail.u32(), tail.u32(), tail.u32());
        let Some(compressed) = rest.get(..compressed_len as usize) else {
            return Err(Problem::Truncated {
                needed: u64::from(compressed_len),
                available: rest.len() as u64,
            });
        };
        let computed = crc32(&[&header[..self.frame_header_len - 4], compressed]);
        if computed != frame_crc {
            return Err(Problem::ChecksumMismatch {
                which: Checksum::Frame,
                stored: frame_crc,
                computed,
            });
        }
        Ok(Frame {
            fields: Fields::new(fields),
            compressed,
            payload_crc,
            end: self.pos + header.len() + compressed.len(),
        })
    }

    /// Decompresses a frame's payload, which must be exactly one zstd frame
    /// of exactly `len` bytes, and checks the payload CRC. The caller has
    /// checked `len` against its limits, so this allocates at most that.
    pub(crate) fn payload(&mut self, frame: &Frame<'a>, len: usize) -> Result<Vec<u8>, Problem> {
        let data = decompress_exact(&mut self.decompressor, frame.compressed, len)?;
        let computed = crc32(&[&data]);
        if computed != frame.payload_crc {
            return Err(Problem::ChecksumMismatch {
                which: Checksum::Payload,
                stored: frame.payload_crc,
                computed,
            });
        }
        Ok(data)
    }

    /// Moves past a frame that checked out.
    pub(crate) fn advance(&mut self, frame: &Frame<'a>) {
        self.pos = frame.end;
        self.index += 1;
    }

    /// Stops for good after a failed read.
    pub(crate) fn fail(&mut self) {
        self.state = State::Failed;
    }

    /// Checks the trailer once every frame has been read: it must end the
    /// file, pass its CRC and count the header's frames. Checked once; later
    /// calls repeat the verdict, and after a failed read it refuses.
    pub(crate) fn check_trailer(&mut self) -> Result<(), Problem> {
        match self.state {
            State::Done => return Ok(()),
            State::Failed => {
                return Err(Problem::Invalid {
                    detail: "finish after a failed read",
                })
            }
            State::Frames => debug_assert_eq!(self.index, self.count),
        }
        let r = read_trailer(self.bytes, self.pos).and_then(|count| {
            if count == self.count {
                return Ok(());
            }
            Err(Problem::Invalid {
                detail: match self.kind {
                    FileKind::Segment => "trailer record count differs from the header",
                    FileKind::Snapshot => "trailer chunk count differs from the header",
                    FileKind::StoreSegment | FileKind::Index => "trailer count differs",
                },
            })
        });
        self.state = if r.is_ok() {
            State::Done
        } else {
            State::Failed
        };
        r
    }

    /// An iterator's last step once the frames are done: the trailer's
    /// problem, reported once; `None` if it checked out or a read had failed.
    pub(crate) fn end(&mut self) -> Option<Problem> {
        if self.state != State::Frames {
            return None;
        }
        self.check_trailer().err()
    }
}

/// Reads the trailer that must start at `body_len` and end the file;
/// returns its count.
fn read_trailer(bytes: &[u8], body_len: usize) -> Result<u32, Problem> {
    let rest = bytes.len().saturating_sub(body_len);
    if rest < TRAILER_LEN {
        return Err(Problem::Truncated {
            needed: TRAILER_LEN as u64,
            available: rest as u64,
        });
    }
    if rest > TRAILER_LEN {
        return Err(Problem::TrailingBytes {
            count: (rest - TRAILER_LEN) as u64,
        });
    }
    let mut t = Fields::new(bytes.get(body_len..).unwrap_or_default());
    let (stored_len, count, stored_crc) = (t.u64(), t.u32(), t.u32());
    if t.array() != END_MAGIC {
        return Err(Problem::BadMagic);
    }
    let computed = crc32(&[bytes.get(..body_len + 12).unwrap_or_default()]);
    if computed != stored_crc {
        return Err(Problem::ChecksumMismatch {
            which: Checksum::File,
            stored: stored_crc,
            computed,
        });
    }
    if stored_len != body_len as u64 {
        return Err(Problem::Invalid {
            detail: "trailer body length does not match the file",
        });
    }
    Ok(count)
}

/// Decompresses `src`, which must be exactly one zstd frame declaring a
/// content size of exactly `len`, into a fresh buffer of `len` bytes.
fn decompress_exact(
    d: &mut Option<zstd::bulk::Decompressor<'static>>,
    src: &[u8],
    len: usize,
) -> Result<Vec<u8>, Problem> {
    match zstd::zstd_safe::find_frame_compressed_size(src) {
        Ok(n) if n == src.len() => {}
        Ok(_) => {
            return Err(Problem::Invalid {
                detail: "compressed bytes are not exactly one zstd frame",
            })
        }
        Err(code) => {
            // zstd_safe has only the code; zstd's own API turns it into an
            // io::Error of the same message.
            let name = zstd::zstd_safe::get_error_name(code);
            return Err(Problem::Decompress {
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, name).into(),
            });
        }
    }
    match zstd::zstd_safe::get_frame_content_size(src) {
        Ok(Some(n)) if n == len as u64 => {}
        _ => {
            return Err(Problem::Invalid {
                detail: "zstd frame content size differs from the declared size",
            })
        }
    }
    let d = match d {
        Some(d) => d,
        None => d.insert(
            zstd::bulk::Decompressor::new()
                .map_err(|e| Problem::Decompress { source: e.into() })?,
        ),
    };
    // The buffer never grows: zstd writes into its capacity only.
    let mut out = Vec::with_capacity(len);
    let n = d
        .decompress_to_buffer(src, &mut out)
        .map_err(|e| Problem::Decompress { source: e.into() })?;
    if n != len || out.len() != len {
        return Err(Problem::Invalid {
            detail: "decompressed size differs from the declared size",
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pitr::format::DEFAULT_LEVEL;

    const TEST: Framing = Framing {
        kind: FileKind::Segment,
        magic: *b"TESTTEST",
        version: 7,
        header_len: 24,
        frame_header_len: 16,
    };

    #[test]
    fn fields_never_read_past_the_end() {
        let mut f = Fields::new(&[1, 2, 3]);
        assert_eq!(f.u16(), 0x0201);
        assert_eq!(f.u16(), 0);
        assert_eq!(f.array::<1>(), [0]);
    }

    #[test]
    fn header_round_trip_and_check_order() {
        let h = TEST.encode_header(&[&0xdead_beefu32.to_le_bytes(), &[9; 4]]);
        let mut f = TEST.decode_header(&h).unwrap();
        assert_eq!((f.u32(), f.u32()), (0xdead_beef, 0x0909_0909));
        let problem = |b: &[u8]| TEST.decode_header(b).unwrap_err().problem().clone();
        assert!(matches!(problem(&h[..7]), Problem::Truncated { .. }));
        let mut bad = h.clone();
        bad[0] ^= 1;
        assert_eq!(problem(&bad[..9]), Problem::BadMagic);
        let mut bad = h.clone();
        bad[8] = 8;
        assert_eq!(problem(&bad), Problem::UnsupportedVersion { version: 8 });
        assert!(matches!(problem(&h[..23]), Problem::Truncated { .. }));
        // Flags are only read once the CRC has vouched for them.
        let mut bad = h.clone();
        bad[10] = 1;
        assert!(matches!(problem(&bad), Problem::ChecksumMismatch { .. }));
        let crc = crc32(&[&bad[..20]]);
        bad[20..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(problem(&bad), Problem::UnknownFlags { flags: 1 });
    }

    /// Reads a file of `TEST` framing whose frames hold `lens` bytes each.
    fn decode(bytes: &[u8], lens: &[usize]) -> Result<Vec<Vec<u8>>, Problem> {
        TEST.decode_header(bytes).map_err(|e| e.problem().clone())?;
        let mut r = FrameReader::new(&TEST, bytes, lens.len() as u32);
        let mut out = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            assert_eq!(r.location(), Location::Record(i as u32));
            let f = r.read()?;
            assert_eq!(f.fields.clone().u32(), i as u32);
            out.push(r.payload(&f, len)?);
            r.advance(&f);
        }
        assert!(!r.has_next());
        r.check_trailer()?;
        assert_eq!((r.end(), r.check_trailer()), (None, Ok(())));
        Ok(out)
    }

    #[test]
    fn frames_round_trip_and_every_damaged_byte_is_caught() {
        let payloads: [&[u8]; 3] = [b"one", &[7; 10_000], b""];
        let mut bytes = TEST.encode_header(&[&[0; 4], &[0; 4]]);
        let mut w = FrameWriter::new(DEFAULT_LEVEL).unwrap();
        for (i, p) in payloads.iter().enumerate() {
            let (h, c) = w.frame(&[&(i as u32).to_le_bytes()], p, "test").unwrap();
            bytes.extend_from_slice(h);
            bytes.extend_from_slice(c);
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes);
        bytes.extend_from_slice(&trailer(crc, bytes.len() as u64, 3));
        let lens = [3, 10_000, 0];
        assert_eq!(decode(&bytes, &lens).unwrap(), payloads);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&bad, &lens).is_err(), "flip at {i}");
        }
        assert!(decode(&bytes[..bytes.len() - 1], &lens).is_err());
        assert!(decode(&bytes, &[3, 10_001, 0]).is_err());
        // Fewer frames than the file holds: the trailer is not where it
        // should be.
        assert!(matches!(
            decode(&bytes, &lens[..2]),
            Err(Problem::TrailingBytes { .. })
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            decode(&longer, &lens),
            Err(Problem::TrailingBytes { count: 1 })
        );
    }

    #[test]
    fn zstd_frames_must_be_exact() {
        let mut w = FrameWriter::new(DEFAULT_LEVEL).unwrap();
        let raw = vec![7u8; 10_000];
        let out = w.frame(&[], &raw, "test").unwrap().1.to_vec();
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
}
