//! The store journal's file format (docs/format.md, "Store journal").
//!
//! A journal file is a 32-byte header followed by records. Each record is
//! one commit of one object: its identity, the database size after it and
//! the pages it wrote, zstd-compressed, under a CRC-32 of the whole body.
//! The header names the boot it was written in: within one boot the page
//! cache still holds every write, so only a file from an earlier boot can
//! hold commits that an object's own files lost.
//! A record is written with one `pwrite` and is valid only whole: a reader
//! stops at the first record that is cut short or fails its CRC, because
//! everything from there on was written after the last fsync. Since
//! version 2 each record ends with how far its file was fsynced when it
//! was written, so a reader can tell a torn tail (writes after the last
//! fsync may land in any order) from damage to bytes already durable.

use crate::id::ObjectId;
use crate::sqlite::wal::WalCommit;

pub(crate) const MAGIC: [u8; 8] = *b"AMBERJNL";
/// The version this amber writes; it reads back to `MIN_VERSION`.
pub(crate) const VERSION: u32 = 2;
pub(crate) const MIN_VERSION: u32 = 1;
/// Version 2's trailer: the file's fsynced length when the record was
/// written (u64 LE), inside the CRC.
const SYNCED_TO: usize = 8;
pub(crate) const FILE_HEADER: usize = 32;
/// Length and CRC in front of each body.
pub(crate) const RECORD_HEADER: usize = 8;
/// The body's fixed part, before the page numbers.
const BODY_FIXED: usize = 68;
/// A body longer than this is garbage, not a record: a commit of amber's
/// largest object touches far less at once.
const MAX_BODY: u32 = 1 << 30;
/// zstd level for page images: the fastest, since this runs on the commit
/// path; b-tree pages of small rows still shrink several times.
const ZSTD_LEVEL: i32 = 1;

thread_local! {
    /// One zstd context per committing thread: making a context costs more
    /// than compressing a small commit with it.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// What a record says about its commit, without the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHead {
    pub(crate) id: ObjectId,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    pub(crate) time_ms: u64,
    pub(crate) db_size_pages: u32,
    pub(crate) page_size: u32,
    pub(crate) page_count: u32,
    /// Bytes of the file that were fsynced before this record was written
    /// (0 in version 1).
    pub(crate) synced_to: u64,
}

fn trailer(version: u32) -> usize {
    if version >= 2 {
        SYNCED_TO
    } else {
        0
    }
}

/// An all-zero boot id means "unknown": such a file is always replayed.
pub(crate) type BootId = [u8; 16];

pub(crate) fn file_header(boot: &BootId) -> [u8; FILE_HEADER] {
    let mut h = [0u8; FILE_HEADER];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..28].copy_from_slice(boot);
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The version and boot of a journal file, if `h` is a header this amber
/// reads.
pub(crate) fn read_header(h: &[u8]) -> Option<(u32, BootId)> {
    let ok = h.len() >= FILE_HEADER
        && h[..8] == MAGIC
        && (MIN_VERSION..=VERSION).contains(&u32_at(h, 8))
        && u32_at(h, 28) == crc32fast::hash(&h[..28]);
    ok.then(|| (u32_at(h, 8), h[12..28].try_into().expect("16 bytes")))
}

/// A record that `encode` laid out, waiting for `seal` to write its
/// `synced_to` trailer and CRC.
pub(crate) struct Unsealed {
    start: usize,
    crc: crc32fast::Hasher,
}

/// Writes the trailer and CRC of records `encode` appended to `out`. Cheap:
/// it hashes eight bytes per record, so it runs under the journal's lock,
/// where the fsynced length is known.
pub(crate) fn seal(out: &mut [u8], records: Vec<Unsealed>, synced_to: u64) {
    for r in records {
        let len = u32_at(out, r.start) as usize;
        let end = r.start + RECORD_HEADER + len;
        out[end - SYNCED_TO..end].copy_from_slice(&synced_to.to_le_bytes());
        let mut crc = r.crc;
        crc.update(&out[end - SYNCED_TO..end]);
        out[r.start + 4..r.start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    }
}

/// Appends one record for `commit` to `out`, to be sealed.
pub(crate) fn encode(
    id: &ObjectId,
    epoch: u64,
    seq: u64,
    time_ms: u64,
    commit: &WalCommit,
    out: &mut Vec<u8>,
) -> std::io::Result<Unsealed> {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&time_ms.to_le_bytes());
    out.extend_from_slice(&commit.db_size_pages.to_le_bytes());
    out.extend_from_slice(&commit.page_size.to_le_bytes());
    out.extend_from_slice(&(commit.pages.len() as u32).to_le_bytes());
    let mut data = Vec::with_capacity(commit.pages.len() * commit.page_size as usize);
    for (n, p) in &commit.pages {
        out.extend_from_slice(&n.to_le_bytes());
        data.extend_from_slice(p);
    }
    COMPRESSOR.with(|c| -> std::io::Result<()> {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL)?);
        }
        let z = c.as_mut().expect("set above").compress(&data)?;
        out.extend_from_slice(&z);
        Ok(())
    })?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start + RECORD_HEADER..]);
    out.extend_from_slice(&[0u8; SYNCED_TO]);
    let body_len = out.len() - start - RECORD_HEADER;
    if body_len as u64 > u64::from(MAX_BODY) {
        out.truncate(start);
        return Err(std::io::Error::other(
            "commit too large for one journal record",
        ));
    }
    out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
    Ok(Unsealed { start, crc })
}

/// The record at the start of `buf`: `Some((head, total length))` when it
/// is whole and its CRC holds, `None` for a torn or garbage tail. A record
/// that does not fit in `buf` yet reports the length it needs.
pub(crate) enum Peek {
    Record(RecordHead, usize),
    NeedMore(usize),
    Invalid,
}

/// The record at the start of `buf`, in a file of `version`.
pub(crate) fn peek(buf: &[u8], version: u32) -> Peek {
    if buf.len() < RECORD_HEADER {
        return Peek::NeedMore(RECORD_HEADER);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if len > MAX_BODY || (len as usize) < BODY_FIXED + trailer(version) {
        return Peek::Invalid;
    }
    let total = RECORD_HEADER + len as usize;
    if buf.len() < total {
        return Peek::NeedMore(total);
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[RECORD_HEADER..total];
    if crc32fast::hash(body) != crc {
        return Peek::Invalid;
    }
    match head(body, version) {
        Some(h) => Peek::Record(h, total),
        None => Peek::Invalid,
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn head(body: &[u8], version: u32) -> Option<RecordHead> {
    let t = trailer(version);
    if body.len() < BODY_FIXED + t {
        return None;
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&body[..32]);
    let h = RecordHead {
        id: ObjectId::from_bytes(id),
        epoch: u64_at(body, 32),
        seq: u64_at(body, 40),
        time_ms: u64_at(body, 48),
        db_size_pages: u32_at(body, 56),
        page_size: u32_at(body, 60),
        page_count: u32_at(body, 64),
        synced_to: if t > 0 {
            u64_at(body, body.len() - t)
        } else {
            0
        },
    };
    let numbers_end = BODY_FIXED as u64 + 4 * u64::from(h.page_count);
    let sane = (512..=65536).contains(&h.page_size)
        && h.page_size.is_power_of_two()
        && h.db_size_pages > 0
        && numbers_end <= (body.len() - t) as u64;
    sane.then_some(h)
}

/// Decodes a whole record (as `peek` accepted it) back into its commit.
pub(crate) fn decode(record: &[u8], version: u32) -> Option<(RecordHead, WalCommit)> {
    let body = record.get(RECORD_HEADER..)?;
    let h = head(body, version)?;
    let n = h.page_count as usize;
    let numbers: Vec<u32> = (0..n).map(|i| u32_at(body, BODY_FIXED + 4 * i)).collect();
    let ps = h.page_size as usize;
    let z = &body[BODY_FIXED + 4 * n..body.len() - trailer(version)];
    let data = zstd::bulk::decompress(z, n * ps).ok()?;
    if data.len() != n * ps {
        return None;
    }
    let pages = numbers
        .into_iter()
        .zip(data.chunks_exact(ps))
        .map(|(no, p)| (no, p.to_vec()))
        .collect();
    Some((
        h,
        WalCommit {
            db_size_pages: h.db_size_pages,
            page_size: h.page_size,
            pages,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(fill: u8) -> WalCommit {
        WalCommit {
            db_size_pages: 3,
            page_size: 4096,
            pages: vec![(1, vec![fill; 4096]), (3, vec![fill ^ 0x5a; 4096])],
        }
    }

    #[test]
    fn a_record_round_trips_and_every_cut_or_flip_is_refused() {
        let id = ObjectId::from_bytes([7; 32]);
        let mut buf = Vec::new();
        let r = encode(&id, 2, 41, 1_700_000_000_000, &commit(9), &mut buf).unwrap();
        // Unsealed, the CRC does not hold yet.
        assert!(matches!(peek(&buf, VERSION), Peek::Invalid));
        seal(&mut buf, vec![r], 12_345);
        let Peek::Record(h, len) = peek(&buf, VERSION) else {
            panic!("whole record refused")
        };
        assert_eq!(len, buf.len());
        assert_eq!(
            (h.id, h.epoch, h.seq, h.page_count, h.synced_to),
            (id, 2, 41, 2, 12_345)
        );
        assert_eq!(&buf[buf.len() - 8..], &12_345u64.to_le_bytes());
        let (_, c) = decode(&buf, VERSION).unwrap();
        assert_eq!(c, commit(9));
        for cut in 0..buf.len() {
            assert!(
                !matches!(peek(&buf[..cut], VERSION), Peek::Record(..)),
                "cut {cut}"
            );
        }
        for at in 0..buf.len() {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(
                !matches!(peek(&bad, VERSION), Peek::Record(..)),
                "flip at {at}"
            );
        }
    }

    #[test]
    fn a_version_1_record_without_a_trailer_still_reads() {
        let id = ObjectId::from_bytes([3; 32]);
        let mut buf = Vec::new();
        encode(&id, 0, 7, 1, &commit(1), &mut buf).unwrap();
        // Version 1 had no trailer: drop it and put the CRC over the rest.
        buf.truncate(buf.len() - SYNCED_TO);
        let body_len = (buf.len() - RECORD_HEADER) as u32;
        buf[0..4].copy_from_slice(&body_len.to_le_bytes());
        let crc = crc32fast::hash(&buf[RECORD_HEADER..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let Peek::Record(h, _) = peek(&buf, 1) else {
            panic!("version 1 record refused")
        };
        assert_eq!((h.seq, h.synced_to), (7, 0));
        assert_eq!(decode(&buf, 1).unwrap().1, commit(1));
    }

    #[test]
    fn the_file_header_is_pinned() {
        let h = file_header(&[0xab; 16]);
        assert_eq!(read_header(&h), Some((2, [0xab; 16])));
        assert_eq!(&h[..12], b"AMBERJNL\x02\x00\x00\x00");
        assert_eq!(&h[12..28], &[0xab; 16]);
        let mut bad = h;
        bad[9] = 1;
        assert_eq!(read_header(&bad), None);
    }
}
