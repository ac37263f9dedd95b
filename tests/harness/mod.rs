//! Harness code shared by the fault, crash and fuzz tests, and by the
//! cargo-fuzz targets in `fuzz/` (which include this directory by path),
//! so that every corpus file replays as a regular test with the exact
//! checks the fuzzer runs.
//!
//! Each fuzz module exposes `run(data: &[u8])`, which panics on a finding
//! and returns normally for anything the engine handled correctly,
//! including a typed error.
#![allow(dead_code)]

pub mod authorizer;
pub mod decoders;
pub mod io_faults;
pub mod kv_sql_ops;
pub mod restore_mutated;
pub mod restored;

/// A fuzz target's checks: panics on a finding.
pub type Target = fn(&[u8]);

/// Every fuzz target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("segment_decode", decoders::segment),
    ("snapshot_decode", decoders::snapshot),
    ("store_log_decode", decoders::store_log),
    ("restore_mutated", restore_mutated::run),
    ("kv_sql_ops", kv_sql_ops::run),
    ("authorizer", authorizer::run),
    ("io_faults", io_faults::run),
];

/// Reads fuzz input front to back; past the end it yields zeros, so every
/// input is a valid program.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Up to `max` bytes, length-prefixed by one byte.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = (self.u8() as usize).min(max);
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos = start + n;
        &self.data[start..end]
    }

    /// The rest of the input.
    pub fn rest(&mut self) -> &'a [u8] {
        let start = self.pos.min(self.data.len());
        self.pos = self.data.len();
        &self.data[start..]
    }
}

/// Copies a directory tree as it is on disk right now.
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
}
