//! Reading committed transactions out of a SQLite WAL file, and writing
//! them back into one.
//!
//! amber captures each commit's frames in-process, right after the commit,
//! by reading the WAL file the way SQLite's own recovery does: frames are
//! valid only while their salts match the header and their cumulative
//! checksums chain, and a transaction ends at a frame that records the
//! database size (a commit frame). The reader keeps a cursor, so each call
//! returns only the commits that appeared since the last one, and notices
//! when the WAL restarted (new salts) after a checkpoint.
//!
//! Writing is for recovery only: commits that the store journal holds but
//! the object's WAL lost in a power cut are appended as frames after the
//! WAL's valid prefix, so that SQLite's own recovery replays them.

use std::ffi::c_int;
use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use libsqlite3_sys as ffi;

use super::Connection;

const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version SQLite writes and accepts.
const WAL_VERSION: u32 = 3_007_000;

/// One committed transaction: its pages (last version of each) and the
/// database size in pages after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalCommit {
    pub(crate) db_size_pages: u32,
    pub(crate) page_size: u32,
    pub(crate) pages: Vec<(u32, Vec<u8>)>,
}

/// Where the reader stopped: the WAL generation (salts), the next frame,
/// and the checksum chain up to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WalCursor {
    salts: Option<(u32, u32)>,
    next_frame: u64,
    checksum: (u32, u32),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing
/// from `(s0, s1)`.
fn checksum(big_endian: bool, data: &[u8], (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    for chunk in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (be32(&chunk[..4]), be32(&chunk[4..]))
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// Positional reads, from a `File` or from SQLite's own WAL handle.
pub(crate) trait ReadAt {
    /// Fills `buf` from `offset`; `UnexpectedEof` when the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// An object's WAL as its connection has it open (`Connection::wal_file`):
/// reading it through SQLite's descriptor costs no descriptor of amber's.
pub(crate) struct WalFile<'conn> {
    file: *mut ffi::sqlite3_file,
    _conn: PhantomData<&'conn ()>,
}

impl WalFile<'_> {
    /// # Safety
    /// `file` must be a file object SQLite keeps open for the lifetime
    /// the caller gives the result.
    pub(super) unsafe fn new<'a>(file: *mut ffi::sqlite3_file) -> Option<WalFile<'a>> {
        // SAFETY: the caller vouches for `file`; `pMethods` is null when
        // the file is not open.
        let open = unsafe { !(*file).pMethods.is_null() };
        open.then_some(WalFile {
            file,
            _conn: PhantomData,
        })
    }
}

impl ReadAt for WalFile<'_> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = c_int::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "read too large"))?;
        let offset = i64::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        // `Connection` is not `Sync`: no other call runs on the file meanwhile.
        // SAFETY: the file is open (checked in `new`) while the connection
        // lives, and `buf` is valid for `len` bytes.
        let rc = unsafe {
            let methods = &*(*self.file).pMethods;
            match methods.xRead {
                Some(read) => read(self.file, buf.as_mut_ptr().cast(), len, offset),
                None => ffi::SQLITE_IOERR_READ,
            }
        };
        match rc {
            ffi::SQLITE_OK => Ok(()),
            ffi::SQLITE_IOERR_SHORT_READ => Err(io::ErrorKind::UnexpectedEof.into()),
            rc => Err(io::Error::other(format!(
                "reading the WAL failed (SQLite error {rc})"
            ))),
        }
    }
}

struct Header {
    big_endian: bool,
    page_size: u32,
    salts: (u32, u32),
    checksum: (u32, u32),
}

fn read_header(file: &impl ReadAt) -> io::Result<Option<Header>> {
    let mut h = [0u8; WAL_HEADER];
    match file.read_exact_at(&mut h, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let magic = be32(&h[0..4]);
    if magic != MAGIC_LE && magic != MAGIC_BE {
        return Ok(None);
    }
    let big_endian = magic == MAGIC_BE;
    let page_size = be32(&h[8..12]);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Ok(None);
    }
    let sum = checksum(big_endian, &h[..24], (0, 0));
    if sum != (be32(&h[24..28]), be32(&h[28..32])) {
        return Ok(None);
    }
    Ok(Some(Header {
        big_endian,
        page_size,
        salts: (be32(&h[16..20]), be32(&h[20..24])),
        checksum: sum,
    }))
}

/// Returns the commits after `cursor`, at most `max_frames` frames into
/// the WAL (the frame count SQLite reported; `None` reads to the end), and
/// advances the cursor past the last complete one.
pub(crate) fn read_commits(
    file: &impl ReadAt,
    cursor: &mut WalCursor,
    max_frames: Option<u64>,
) -> io::Result<Vec<WalCommit>> {
    let Some(h) = read_header(file)? else {
        return Ok(Vec::new());
    };
    if cursor.salts != Some(h.salts) {
        // A new WAL generation: SQLite restarted the log after a checkpoint.
        *cursor = WalCursor {
            salts: Some(h.salts),
            next_frame: 0,
            checksum: h.checksum,
        };
    }
    let ps = h.page_size as usize;
    let frame_len = FRAME_HEADER + ps;
    let mut buf = vec![0u8; frame_len];
    let mut out = Vec::new();
    let mut pending: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut frame = cursor.next_frame;
    let mut sum = cursor.checksum;
    loop {
        if max_frames.is_some_and(|m| frame >= m) {
            break;
        }
        let off = WAL_HEADER as u64 + frame * frame_len as u64;
        match file.read_exact_at(&mut buf, off) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        if (be32(&buf[8..12]), be32(&buf[12..16])) != h.salts {
            break;
        }
        sum = checksum(h.big_endian, &buf[..8], sum);
        sum = checksum(h.big_endian, &buf[FRAME_HEADER..], sum);
        if sum != (be32(&buf[16..20]), be32(&buf[20..24])) {
            break;
        }
        let pgno = be32(&buf[0..4]);
        let db_size = be32(&buf[4..8]);
        match pending.iter_mut().find(|(p, _)| *p == pgno) {
            Some(slot) => slot.1.copy_from_slice(&buf[FRAME_HEADER..]),
            None => pending.push((pgno, buf[FRAME_HEADER..].to_vec())),
        }
        frame += 1;
        if db_size != 0 {
            pending.sort_unstable_by_key(|(p, _)| *p);
            out.push(WalCommit {
                db_size_pages: db_size,
                page_size: h.page_size,
                pages: std::mem::take(&mut pending),
            });
            cursor.next_frame = frame;
            cursor.checksum = sum;
        }
    }
    Ok(out)
}

/// Reads one object's commits out of its WAL as they happen, through the
/// connection's own handle on it; the cursor stays between commits, so
/// each read costs only the new frames.
pub(crate) struct WalTap {
    path: PathBuf,
    cursor: WalCursor,
}

impl WalTap {
    pub(crate) fn new(path: PathBuf) -> WalTap {
        WalTap {
            path,
            cursor: WalCursor::default(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Every commit the WAL of `conn` holds now, from its start; later
    /// reads return only what follows. A WAL not open holds none.
    pub(crate) fn read_all(&mut self, conn: &Connection) -> io::Result<Vec<WalCommit>> {
        self.reset();
        match conn.wal_file() {
            Some(f) => read_commits(&f, &mut self.cursor, None),
            None => Ok(Vec::new()),
        }
    }

    /// The commits since the last read, at most `frames` frames into the
    /// WAL (the count SQLite's WAL hook reported).
    pub(crate) fn read_new(
        &mut self,
        conn: &Connection,
        frames: u32,
    ) -> io::Result<Vec<WalCommit>> {
        let f = conn
            .wal_file()
            .ok_or_else(|| io::Error::other("the connection has no WAL open"))?;
        read_commits(&f, &mut self.cursor, Some(u64::from(frames)))
    }

    /// Forgets the position: after a checkpoint that truncated the WAL.
    pub(crate) fn reset(&mut self) {
        self.cursor = WalCursor::default();
    }
}

/// Appends `commits` to the WAL at `path` right after its last valid
/// commit, and cuts off whatever followed it. A missing or invalid WAL is
/// started afresh with new salts. The database must be closed.
pub(crate) fn append_commits(path: &Path, commits: &[WalCommit]) -> io::Result<()> {
    if commits.is_empty() {
        return Ok(());
    }
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mut cursor = WalCursor::default();
    let header = read_header(&file)?;
    let page_size = commits.first().map_or(0, |c| c.page_size);
    let h = match header {
        Some(h) if h.page_size == page_size => {
            read_commits(&file, &mut cursor, None)?;
            h
        }
        old => {
            // Fresh salts, different from any older generation's, so no
            // stale frame can pass for one of ours.
            let salt1 = old.map_or(0, |h| h.salts.0).wrapping_add(1);
            let salt2 = random_u32();
            let mut b = [0u8; WAL_HEADER];
            b[0..4].copy_from_slice(&MAGIC_LE.to_be_bytes());
            b[4..8].copy_from_slice(&WAL_VERSION.to_be_bytes());
            b[8..12].copy_from_slice(&page_size.to_be_bytes());
            b[16..20].copy_from_slice(&salt1.to_be_bytes());
            b[20..24].copy_from_slice(&salt2.to_be_bytes());
            let sum = checksum(false, &b[..24], (0, 0));
            b[24..28].copy_from_slice(&sum.0.to_be_bytes());
            b[28..32].copy_from_slice(&sum.1.to_be_bytes());
            file.write_all_at(&b, 0)?;
            cursor = WalCursor {
                salts: Some((salt1, salt2)),
                next_frame: 0,
                checksum: sum,
            };
            Header {
                big_endian: false,
                page_size,
                salts: (salt1, salt2),
                checksum: sum,
            }
        }
    };
    let ps = h.page_size as usize;
    let frame_len = FRAME_HEADER + ps;
    let mut sum = cursor.checksum;
    let mut frame = cursor.next_frame;
    let mut buf = vec![0u8; frame_len];
    for c in commits {
        if c.page_size != h.page_size || c.pages.iter().any(|(_, p)| p.len() != ps) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a commit's page size does not match the WAL's",
            ));
        }
        for (i, (pgno, page)) in c.pages.iter().enumerate() {
            let last = i + 1 == c.pages.len();
            buf[0..4].copy_from_slice(&pgno.to_be_bytes());
            let size = if last { c.db_size_pages } else { 0 };
            buf[4..8].copy_from_slice(&size.to_be_bytes());
            buf[8..12].copy_from_slice(&h.salts.0.to_be_bytes());
            buf[12..16].copy_from_slice(&h.salts.1.to_be_bytes());
            buf[FRAME_HEADER..].copy_from_slice(page);
            sum = checksum(h.big_endian, &buf[..8], sum);
            sum = checksum(h.big_endian, &buf[FRAME_HEADER..], sum);
            buf[16..20].copy_from_slice(&sum.0.to_be_bytes());
            buf[20..24].copy_from_slice(&sum.1.to_be_bytes());
            file.write_all_at(&buf, WAL_HEADER as u64 + frame * frame_len as u64)?;
            frame += 1;
        }
    }
    file.set_len(WAL_HEADER as u64 + frame * frame_len as u64)?;
    Ok(())
}

/// A salt that differs between runs; it needs no strength, only change.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_sqlite_reference_shape() {
        // Two words, little-endian: s0 = x0 + 0, s1 = x1 + s0.
        let data = [1, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(checksum(false, &data, (0, 0)), (1, 3));
        assert_eq!(checksum(true, &[0, 0, 0, 1, 0, 0, 0, 2], (0, 0)), (1, 3));
    }

    #[test]
    fn a_missing_or_foreign_file_yields_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w");
        std::fs::write(&p, b"not a wal at all, not a wal at all").unwrap();
        let f = File::open(&p).unwrap();
        let mut c = WalCursor::default();
        assert!(read_commits(&f, &mut c, None).unwrap().is_empty());
    }
}
