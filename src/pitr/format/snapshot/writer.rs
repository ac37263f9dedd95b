//! Writing snapshots: the image streams in, each full chunk is framed and
//! written out at once, so memory stays at one chunk.

use std::io::Write;

use crate::id::ObjectId;

use super::super::frame::{trailer, FrameWriter};
use super::super::{valid_page_size, DecodeLimits, EncodeError};
use super::{CommitInfo, SnapshotOptions, FRAMING, MAX_CHUNK_BYTES};

/// Writes a snapshot to `out` as the image is fed in, one chunk at a time.
/// It implements [`Write`], so `std::io::copy(&mut db_file, &mut writer)`
/// works; [`SnapshotWriter::finish`] then checks that exactly
/// `db_size_pages * page_size` bytes came in and writes the trailer.
pub struct SnapshotWriter<W: Write> {
    out: Output<W>,
    image_len: u64,
    fed: u64,
    chunk_len: usize,
    chunk_count: u32,
    index: u32,
    pending: Vec<u8>,
    frames: FrameWriter,
}

/// The output with what the trailer needs: bytes written and their CRC32.
struct Output<W> {
    out: W,
    crc: crc32fast::Hasher,
    written: u64,
}

impl<W: Write> Output<W> {
    fn emit(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.crc.update(bytes);
        self.written += bytes.len() as u64;
        self.out.write_all(bytes).map_err(io_err)
    }
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
        let limit = DecodeLimits::DEFAULT.max_database_bytes;
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
        let header = FRAMING.encode_header(&[
            &at.page_size.to_le_bytes(),
            object.as_bytes(),
            &epoch.to_le_bytes(),
            &at.seq.to_le_bytes(),
            &at.commit_time_ms.to_le_bytes(),
            &at.db_size_pages.to_le_bytes(),
            &chunk_pages.to_le_bytes(),
            &chunk_count.to_le_bytes(),
        ]);
        let mut w = SnapshotWriter {
            out: Output {
                out,
                crc: crc32fast::Hasher::new(),
                written: 0,
            },
            image_len,
            fed: 0,
            chunk_len: chunk_pages as usize * at.page_size as usize,
            chunk_count,
            index: 0,
            pending: Vec::new(),
            frames: FrameWriter::new(options.level)?,
        };
        w.out.emit(&header)?;
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
        let Output {
            mut out,
            crc,
            written,
        } = self.out;
        out.write_all(&trailer(crc, written, self.chunk_count))
            .map_err(io_err)?;
        out.flush().map_err(io_err)?;
        Ok(out)
    }

    fn flush_chunk(&mut self) -> Result<(), EncodeError> {
        let (h, c) = self.frames.frame(
            &[&self.index.to_le_bytes()],
            &self.pending,
            "compressed chunk",
        )?;
        self.out.emit(h)?;
        self.out.emit(c)?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }
}

impl<W: Write> Write for SnapshotWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The EncodeError rides inside, with the writer's own error (if
        // that is what failed) as its source and kind.
        self.write_image(buf).map_err(|e| {
            let kind = match &e {
                EncodeError::Io { source } => source.get().kind(),
                _ => std::io::ErrorKind::InvalidInput,
            };
            std::io::Error::new(kind, e)
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn io_err(e: std::io::Error) -> EncodeError {
    EncodeError::Io { source: e.into() }
}
