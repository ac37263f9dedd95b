//! Arbitrary bytes through the snapshot decoder. It must never panic, never
//! allocate past its limits, and the chunk-by-chunk form must agree with the
//! whole-file form; what decodes must re-encode to the same image.

#![no_main]

use amber::pitr::{decode_snapshot_with, Limits, SnapshotOptions, SnapshotReader, SnapshotWriter};
use libfuzzer_sys::fuzz_target;

/// Small enough that a forged size stays far below libFuzzer's memory limit.
const LIMITS: Limits = Limits {
    max_block_bytes: 1 << 20,
    max_database_bytes: 1 << 30,
};

fuzz_target!(|data: &[u8]| {
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
});
