//! The `io_faults` target; the checks are documented in the harness module,
//! `tests/harness/io_faults.rs`, which `cargo test --test fuzz_corpus` runs on
//! this target's corpus too.

#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::io_faults::run(data));
