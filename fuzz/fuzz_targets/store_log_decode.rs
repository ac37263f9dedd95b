//! Arbitrary bytes through the shared log's decoders: a store segment's
//! table of contents (and the per-object segments it points at) and an
//! object index. Never a panic; what decodes re-encodes to the same bytes.

#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::decoders::store_log(data));
