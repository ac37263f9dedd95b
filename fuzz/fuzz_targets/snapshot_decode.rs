//! Arbitrary bytes through the snapshot decoder. It must never panic, never
//! allocate past its limits, and the chunk-by-chunk form must agree with the
//! whole-file form; what decodes must re-encode to the same image.

#![no_main]

// The checks live in the main crate's test harness, so `cargo test --test
// fuzz_corpus` replays this target's corpus with exactly these assertions.
#[path = "../../tests/harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::decoders::snapshot(data));
