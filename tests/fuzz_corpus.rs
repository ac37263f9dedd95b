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
