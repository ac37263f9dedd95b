//! Arbitrary bytes through the segment decoder. It must never panic, never
//! allocate past its limits, and never return data that differs between
//! its whole-file and record-by-record forms; what decodes must re-encode
//! to a segment that decodes to the same records.

#![no_main]

// The checks live in the main crate's test harness, so `cargo test --test
// fuzz_corpus` replays this target's corpus with exactly these assertions.
#[path = "../../tests/harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::decoders::segment(data));
