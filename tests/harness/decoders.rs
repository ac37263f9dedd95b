//! The decoder targets (`segment_decode`, `snapshot_decode`): arbitrary
//! bytes through the segment and snapshot decoders. They must never panic,
//! never allocate past their limits, and the streaming and whole-file forms
//! must agree; what decodes must re-encode to the same content.

use amber::pitr::{
    decode_segment_with, decode_snapshot_with, encode_segment, DecodeLimits, Record, SegmentReader,
    SnapshotOptions, SnapshotReader, SnapshotWriter,
};

/// Small enough that a forged size stays far below libFuzzer's memory limit.
const LIMITS: DecodeLimits = DecodeLimits {
    max_block_bytes: 1 << 20,
    max_database_bytes: 1 << 30,
};

pub fn segment(data: &[u8]) {
    let whole = decode_segment_with(data, LIMITS);

    // Record by record: the same records, and an error names the last
    // record that came out as the last good one.
    match SegmentReader::with_limits(data, LIMITS) {
        Err(_) => assert!(whole.is_err()),
        Ok(reader) => {
            let mut got: Vec<Record> = Vec::new();
            let mut failed = false;
            for r in reader {
                match r {
                    Ok(rec) => got.push(rec),
                    Err(e) => {
                        assert_eq!(e.last_good_seq(), got.last().map(Record::seq));
                        failed = true;
                    }
                }
            }
            match &whole {
                Ok(seg) => {
                    assert!(!failed);
                    assert_eq!(seg.records, got);
                }
                Err(_) => assert!(failed),
            }
        }
    }

    let Ok(seg) = whole else { return };

    // Skipping checks frames only, so it succeeds wherever decoding does.
    let mut reader = SegmentReader::with_limits(data, LIMITS).expect("header decoded before");
    for want in &seg.records {
        let meta = reader.skip_record().expect("a record").expect("skippable");
        assert_eq!(meta, want.meta());
    }
    assert!(reader.finish().is_ok());

    let again = encode_segment(&seg.header.object, seg.header.epoch, &seg.records)
        .expect("decoded records re-encode");
    let back = decode_segment_with(&again, LIMITS).expect("re-encoded segment decodes");
    assert_eq!(back.records, seg.records);
    assert_eq!(back.header, seg.header);
}

pub fn snapshot(data: &[u8]) {
    let whole = decode_snapshot_with(data, LIMITS);

    match SnapshotReader::with_limits(data, LIMITS) {
        Err(_) => assert!(whole.is_err()),
        Ok(reader) => {
            let mut image = Vec::new();
            let mut failed = false;
            for c in reader {
                match c {
                    Ok(c) => {
                        assert_eq!(c.offset, image.len() as u64);
                        image.extend_from_slice(&c.data);
                    }
                    Err(_) => failed = true,
                }
            }
            match &whole {
                Ok(snap) => {
                    assert!(!failed);
                    assert_eq!(snap.image, image);
                }
                Err(_) => assert!(failed),
            }
        }
    }

    let Ok(snap) = whole else { return };
    let h = &snap.header;
    assert_eq!(snap.image.len() as u64, h.image_len());
    let options = SnapshotOptions {
        chunk_bytes: h.chunk_pages.saturating_mul(h.commit.page_size),
        ..SnapshotOptions::default()
    };
    let mut w = SnapshotWriter::new(Vec::new(), &h.object, h.epoch, h.commit, options)
        .expect("decoded header re-encodes");
    w.write_image(&snap.image).expect("image fits");
    let again = w.finish().expect("finishes");
    let back = decode_snapshot_with(&again, LIMITS).expect("re-encoded snapshot decodes");
    assert_eq!(&back.header, h);
    assert_eq!(back.image, snap.image);
}

/// The `store_log_decode` target: arbitrary bytes through the shared log's
/// two decoders, the store segment's table of contents (with the parts it
/// points at through the segment checks above) and the object index.
/// Nothing panics; what decodes re-encodes to the same bytes.
pub fn store_log(data: &[u8]) {
    use amber::pitr::store_log::{
        decode_index, encode_index, encode_store_segment, read_store_toc, store_header_len,
        PackedPart,
    };
    match (read_store_toc(data), store_header_len(data)) {
        (Ok(toc), Ok(len)) => {
            assert_eq!(toc.header_len(), len);
            // Every part the table names, within the file, goes through
            // the segment decoder's checks; and the table re-encodes to
            // the same header bytes.
            let mut parts = Vec::new();
            for e in &toc.entries {
                let (a, b) = (e.offset as usize, (e.offset + e.len) as usize);
                let bytes = data.get(a..b.min(data.len())).unwrap_or(&[]).to_vec();
                segment(&bytes);
                parts.push(PackedPart {
                    object: e.object,
                    epoch: e.epoch,
                    first: e.first,
                    last: e.last,
                    bytes: vec![0; e.len.min(1 << 16) as usize],
                });
            }
            if toc.entries.iter().all(|e| e.len <= 1 << 16) {
                let (again, toc2) =
                    encode_store_segment(toc.stream, toc.gen, toc.written_ms, &parts);
                assert_eq!(toc2, toc);
                assert_eq!(&again[..len as usize], &data[..len as usize]);
            }
        }
        (Ok(_), Err(e)) => panic!("the table decoded but its length did not: {e}"),
        (Err(_), _) => {}
    }
    if let Ok(ix) = decode_index(data) {
        assert_eq!(encode_index(&ix), data, "an index re-encodes to its bytes");
    }
}
