//! Replays every seed corpus in `fuzz/corpus/<target>/` through the same
//! harness code the cargo-fuzz targets run (`tests/harness/`), so the
//! corpora are regression tests on the stable toolchain, without
//! libFuzzer. A file that once crashed a target belongs in its corpus.

mod harness;

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut total = 0;
    for (target, run) in harness::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: empty corpus");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let r = std::panic::catch_unwind(|| run(&data));
            assert!(r.is_ok(), "{target}: {} fails", f.display());
        }
        eprintln!("{target}: {} corpus files ok", files.len());
        total += files.len();
    }
    eprintln!("{total} corpus files replayed");
}

/// Writes the `store_log_decode` seeds: two store segments (two real parts,
/// and none) and an object index. Run after a format change:
/// `cargo test --test fuzz_corpus -- --ignored store_log_seeds`.
#[test]
#[ignore]
fn store_log_seeds() {
    use amber::pitr::store_log::{
        encode_index, encode_store_segment, IndexEntry, ObjectIndex, PackedPart, StreamId,
    };
    use amber::pitr::{CommitInfo, Record, SegmentWriter};
    use amber::ObjectId;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/store_log_decode");
    std::fs::create_dir_all(&dir).unwrap();
    let part = |obj: u8, first: u64, n: u64| {
        let id = ObjectId::from_hex(&format!("{obj:02x}").repeat(32)).unwrap();
        let mut w = SegmentWriter::new(id, 1).unwrap();
        for s in first..first + n {
            let c = CommitInfo {
                seq: s,
                commit_time_ms: 1_000 + s,
                db_size_pages: 2,
                page_size: 4096,
            };
            let page = vec![s as u8; 4096];
            w.push(&Record::with_pages(c, [(2u32, &page[..])]).unwrap())
                .unwrap();
        }
        PackedPart {
            object: id,
            epoch: 1,
            first,
            last: first + n - 1,
            bytes: w.finish().unwrap(),
        }
    };
    let parts = [part(1, 3, 2), part(2, 1, 1)];
    let (two, toc) = encode_store_segment(StreamId([7; 16]), 4, 5_000, &parts);
    std::fs::write(dir.join("valid-2-parts.sseg"), &two).unwrap();
    let (none, _) = encode_store_segment(StreamId([8; 16]), 0, 0, &[]);
    std::fs::write(dir.join("valid-empty.sseg"), none).unwrap();
    let e = toc.entries[0];
    let ix = ObjectIndex {
        object: e.object,
        epoch: 1,
        stream: StreamId([7; 16]),
        from_gen: 2,
        through_gen: 4,
        entries: vec![IndexEntry {
            gen: 4,
            offset: e.offset,
            len: e.len,
            first: e.first,
            last: e.last,
        }],
    };
    std::fs::write(dir.join("valid-1-run.idx"), encode_index(&ix)).unwrap();
}
