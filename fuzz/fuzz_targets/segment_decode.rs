//! Arbitrary bytes through the segment decoder. It must never panic, never
//! allocate past its limits, and never return data that differs between
//! its whole-file and record-by-record forms; what decodes must re-encode
//! to a segment that decodes to the same records.

#![no_main]

use amber::pitr::{decode_segment_with, encode_segment, Limits, Record, SegmentReader};
use libfuzzer_sys::fuzz_target;

/// Small enough that a forged size stays far below libFuzzer's memory limit.
const LIMITS: Limits = Limits {
    max_block_bytes: 1 << 20,
    max_database_bytes: 1 << 30,
};

fuzz_target!(|data: &[u8]| {
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
});
