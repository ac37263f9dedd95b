use super::*;
use std::io::Write;

use super::super::frame::TRAILER_LEN;
use super::super::{Checksum, Location, Problem};

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
    let small = DecodeLimits {
        max_block_bytes: 1024,
        ..DecodeLimits::DEFAULT
    };
    assert!(matches!(
        decode_snapshot_with(&bytes, small).unwrap_err().problem(),
        Problem::TooLarge {
            declared: 4096,
            limit: 1024
        }
    ));
    let tiny = DecodeLimits {
        max_database_bytes: 512,
        ..DecodeLimits::DEFAULT
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
