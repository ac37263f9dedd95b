use super::super::frame::{crc32, TRAILER_LEN};
use super::super::{Checksum, Location, Problem};
use super::*;

fn object() -> ObjectId {
    ObjectId::from_name(&[9; 32], "segment-tests").unwrap()
}

fn commit(seq: u64, time: u64) -> CommitInfo {
    CommitInfo {
        seq,
        commit_time_ms: time,
        db_size_pages: 10,
        page_size: 512,
    }
}

fn record(seq: u64, time: u64, pages: &[u32]) -> Record {
    Record::with_pages(
        commit(seq, time),
        pages
            .iter()
            .map(|&n| (n, vec![(seq as u8) ^ (n as u8); 512])),
    )
    .unwrap()
}

fn three() -> Vec<Record> {
    vec![
        record(5, 1000, &[1, 2, 3]),
        record(6, 1000, &[]),
        record(7, 1002, &[2, 10]),
    ]
}

/// Recomputes record 0's frame CRC and the file CRC after a test edited
/// record 0's frame header, so the edit reaches the later checks.
fn reseal_first_record(bytes: &mut [u8]) {
    let h = SEGMENT_HEADER_LEN;
    let clen = u32::from_le_bytes(bytes[h + 28..h + 32].try_into().unwrap()) as usize;
    let crc = crc32(&[&bytes[h..h + 36], &bytes[h + 40..h + 40 + clen]]);
    bytes[h + 36..h + 40].copy_from_slice(&crc.to_le_bytes());
    let t = bytes.len() - TRAILER_LEN;
    let crc = crc32(&[&bytes[..t + 12]]);
    bytes[t + 12..t + 16].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn round_trip() {
    let records = three();
    let bytes = encode_segment(&object(), 4, &records).unwrap();
    let seg = decode_segment(&bytes).unwrap();
    assert_eq!(seg.records, records);
    assert_eq!(seg.header.object, object());
    assert_eq!(seg.header.epoch, 4);
    assert_eq!((seg.header.first_seq, seg.header.last_seq), (5, 7));
    assert_eq!(
        (seg.header.first_time_ms, seg.header.last_time_ms),
        (1000, 1002)
    );
    assert_eq!(seg.header.record_count, 3);
    let pages: Vec<_> = seg.records[2].pages().map(|(n, p)| (n, p[0])).collect();
    assert_eq!(pages, vec![(2, 7 ^ 2), (10, 7 ^ 10)]);
    assert_eq!(
        read_segment_header(&bytes[..SEGMENT_HEADER_LEN]).unwrap(),
        seg.header
    );
}

#[test]
fn extreme_page_sizes_round_trip() {
    for page_size in [512u32, 65536] {
        let c = CommitInfo {
            seq: u64::MAX - 1,
            commit_time_ms: u64::MAX,
            db_size_pages: u32::MAX,
            page_size: 512,
        };
        let c = CommitInfo {
            page_size,
            db_size_pages: 1 << 20,
            ..c
        };
        let r = Record::with_pages(
            c,
            [
                (1u32, vec![1u8; page_size as usize]),
                (1 << 20, vec![2; page_size as usize]),
            ],
        )
        .unwrap();
        let bytes = encode_segment(&object(), u64::MAX, std::slice::from_ref(&r)).unwrap();
        assert_eq!(decode_segment(&bytes).unwrap().records, vec![r]);
    }
}

#[test]
fn writer_refuses_bad_records() {
    let mut w = SegmentWriter::new(object(), 1).unwrap();
    w.push(&record(1, 10, &[1])).unwrap();
    assert_eq!(
        w.push(&record(3, 10, &[1])),
        Err(EncodeError::NonContiguous {
            expected: 2,
            found: 3
        })
    );
    assert_eq!(
        w.push(&record(2, 9, &[1])),
        Err(EncodeError::TimeWentBackwards {
            previous: 10,
            found: 9
        })
    );
    let len = w.encoded_len();
    let p = vec![0u8; 512];
    type Pages<'a> = Vec<(u32, &'a [u8])>;
    let bad: [(CommitInfo, Pages); 5] = [
        (commit(2, 10), vec![(2, &p), (1, &p)]),
        (commit(2, 10), vec![(0, &p)]),
        (commit(2, 10), vec![(11, &p)]),
        (commit(2, 10), vec![(1, &p[..511])]),
        (
            CommitInfo {
                page_size: 1000,
                ..commit(2, 10)
            },
            vec![],
        ),
    ];
    for (c, pages) in bad {
        assert!(w.push_pages(c, pages).is_err());
    }
    assert!(w
        .push_pages(
            CommitInfo {
                db_size_pages: 0,
                ..commit(2, 10)
            },
            []
        )
        .is_err());
    // Nothing was appended by the failed pushes.
    assert_eq!(w.encoded_len(), len);
    assert_eq!(w.seq_range(), Some((1, 1)));
    w.push(&record(2, 10, &[4])).unwrap();
    assert_eq!(
        decode_segment(&w.finish().unwrap()).unwrap().records.len(),
        2
    );
    assert_eq!(
        SegmentWriter::new(object(), 1).unwrap().finish(),
        Err(EncodeError::Empty)
    );
    assert!(matches!(
        Record::new(CommitInfo {
            page_size: 4097,
            ..commit(1, 1)
        }),
        Err(EncodeError::InvalidPageSize { .. })
    ));
}

#[test]
fn incremental_reading_stops_at_a_target() {
    let bytes = encode_segment(&object(), 1, &three()).unwrap();
    let mut r = SegmentReader::new(&bytes).unwrap();
    let meta = r.skip_record().unwrap().unwrap();
    assert_eq!((meta.commit.seq, meta.page_count), (5, 3));
    let rec = r.next_record().unwrap().unwrap();
    assert_eq!(rec.seq(), 6);
    assert_eq!(r.last_good_seq(), Some(6));
    // A restore to seq 6 stops here; the rest is still checkable.
    assert_eq!(r.finish().unwrap().last_seq, 7);
}

#[test]
fn iterator_checks_the_trailer_last() {
    let mut bytes = encode_segment(&object(), 1, &three()).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff; // end magic
    let results: Vec<_> = SegmentReader::new(&bytes).unwrap().collect();
    assert_eq!(results.len(), 4);
    assert!(results[..3].iter().all(|r| r.is_ok()));
    let e = results[3].as_ref().unwrap_err();
    assert_eq!(e.location(), Location::Trailer);
    assert_eq!(e.last_good_seq(), Some(7));
    assert!(decode_segment(&bytes).is_err());
}

#[test]
fn damaged_record_names_the_last_good_seq() {
    let records = three();
    let bytes = encode_segment(&object(), 1, &records).unwrap();
    // Flip a byte inside record 2's compressed payload (the last bytes
    // before the trailer).
    let mut bad = bytes.clone();
    let at = bad.len() - TRAILER_LEN - 1;
    bad[at] ^= 0x40;
    let mut r = SegmentReader::new(&bad).unwrap();
    assert_eq!(r.next().unwrap().unwrap(), records[0]);
    assert_eq!(r.next().unwrap().unwrap(), records[1]);
    let e = r.next().unwrap().unwrap_err();
    assert_eq!(e.record_index(), Some(2));
    assert_eq!(e.last_good_seq(), Some(6));
    assert!(matches!(
        e.problem(),
        Problem::ChecksumMismatch {
            which: Checksum::Frame,
            ..
        }
    ));
    assert!(r.next().is_none(), "fused after an error");
    assert_eq!(crate::Error::from(e).kind(), crate::ErrorKind::Corruption);
}

#[test]
fn continue_from_checks_the_seam() {
    let bytes = encode_segment(&object(), 1, &three()).unwrap();
    let r = SegmentReader::new(&bytes)
        .unwrap()
        .continue_from(4, 999)
        .unwrap();
    assert_eq!(r.last_good_seq(), Some(4));
    assert_eq!(r.count(), 3);
    let gap = SegmentReader::new(&bytes).unwrap().continue_from(3, 0);
    let e = gap.err().unwrap();
    assert_eq!(
        e.problem(),
        &Problem::NonContiguous {
            expected: 4,
            found: 5
        }
    );
    assert_eq!(e.last_good_seq(), Some(3));
    let back = SegmentReader::new(&bytes).unwrap().continue_from(4, 1001);
    assert!(matches!(
        back.err().unwrap().problem(),
        Problem::TimeWentBackwards { .. }
    ));
    let r = SegmentReader::new(&bytes).unwrap();
    assert!(r.expect_origin(&object(), 1).is_ok());
    assert!(r.expect_origin(&object(), 2).is_err());
    let other = ObjectId::from_name(&[1; 32], "x").unwrap();
    assert!(r.expect_origin(&other, 1).is_err());
}

#[test]
fn declared_sizes_are_capped_before_allocating() {
    let bytes = encode_segment(&object(), 1, &[record(1, 1, &[1, 2, 3])]).unwrap();
    let small = DecodeLimits {
        max_block_bytes: 1000,
        ..DecodeLimits::DEFAULT
    };
    let e = decode_segment_with(&bytes, small).unwrap_err();
    assert!(matches!(
        e.problem(),
        Problem::TooLarge {
            declared: 1548,
            limit: 1000
        }
    ));
    let tiny_db = DecodeLimits {
        max_database_bytes: 4096,
        ..DecodeLimits::DEFAULT
    };
    assert!(matches!(
        decode_segment_with(&bytes, tiny_db).unwrap_err().problem(),
        Problem::TooLarge { declared: 5120, .. }
    ));
    // A frame that declares 2^32-1 pages of 64 KiB with a valid CRC: refused
    // by the size checks, nothing allocated.
    let mut forged = bytes.clone();
    let h = SEGMENT_HEADER_LEN;
    forged[h + 16..h + 20].copy_from_slice(&u32::MAX.to_le_bytes());
    forged[h + 20..h + 24].copy_from_slice(&65536u32.to_le_bytes());
    forged[h + 24..h + 28].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_first_record(&mut forged);
    assert!(matches!(
        decode_segment(&forged).unwrap_err().problem(),
        Problem::TooLarge { .. }
    ));
    // Same page count, honest sizes: the zstd frame's content size differs.
    let mut forged = bytes.clone();
    forged[h + 24..h + 28].copy_from_slice(&4u32.to_le_bytes());
    reseal_first_record(&mut forged);
    assert!(matches!(
        decode_segment(&forged).unwrap_err().problem(),
        Problem::Invalid { .. }
    ));
    // skip_record trusts the frame CRC only; the payload is not read.
    let mut r = SegmentReader::new(&forged).unwrap();
    assert_eq!(r.skip_record().unwrap().unwrap().page_count, 4);
}

#[test]
fn header_fields_are_checked() {
    let bytes = encode_segment(&object(), 1, &three()).unwrap();
    let mut v2 = bytes.clone();
    v2[8] = 2;
    assert_eq!(
        decode_segment(&v2).unwrap_err().problem(),
        &Problem::UnsupportedVersion { version: 2 }
    );
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert_eq!(
        decode_segment(&magic).unwrap_err().problem(),
        &Problem::BadMagic
    );
    for cut in [0, 7, 9, SEGMENT_HEADER_LEN - 1] {
        let e = decode_segment(&bytes[..cut]).unwrap_err();
        assert_eq!(e.location(), Location::Header, "cut {cut}");
    }
    // Header re-sealed with a record count that disagrees with the range.
    let mut count = bytes.clone();
    count[12] = 2;
    let crc = crc32(&[&count[..88]]);
    count[88..92].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        decode_segment(&count).unwrap_err().problem(),
        Problem::Invalid { .. }
    ));
}
