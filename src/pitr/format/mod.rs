//! The segment and snapshot file formats. Byte tables and the reasons
//! behind them are in `docs/format.md`.
//!
//! Both formats are one framing (`frame.rs`) with different fields:
//!
//! ```text
//! header | frame 0 | frame 1 | ... | frame n-1 | trailer (24 bytes)
//! ```
//!
//! - [`segment`]: one frame (a *record*) per commit, holding its WAL pages.
//! - [`snapshot`]: one frame (a *chunk*) per run of pages of a database
//!   image.
//!
//! The typed errors ([`DecodeError`], [`EncodeError`]) are in `error.rs`.
//! Nothing here panics on input bytes: every read is bounds-checked, every
//! size computation checked for overflow, and declared sizes are capped by
//! [`DecodeLimits`] before anything is allocated.

pub(crate) mod error;
mod frame;
pub mod segment;
pub mod snapshot;
pub mod store_log;

pub use error::{Checksum, DecodeError, EncodeError, FileKind, IoCause, Location, Problem};

/// Smallest SQLite page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest SQLite page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

/// zstd level used by the encoders unless told otherwise.
pub const DEFAULT_LEVEL: i32 = 3;

/// True for the page sizes SQLite can use: powers of two from 512 to 65536.
pub fn valid_page_size(page_size: u32) -> bool {
    (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) && page_size.is_power_of_two()
}

/// Size caps the decoders apply before allocating anything. Declared sizes
/// above them are refused as [`Problem::TooLarge`], so hostile bytes cannot
/// make the decoder allocate more than `max_block_bytes` at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest decompressed block: one segment record's payload or one
    /// snapshot chunk. The encoders refuse records above the default.
    pub max_block_bytes: u64,
    /// Largest database a record or snapshot may declare
    /// (`db_size_pages * page_size`).
    pub max_database_bytes: u64,
}

impl DecodeLimits {
    /// Default: blocks up to 1 GiB, databases up to 1 TiB.
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_block_bytes: 1 << 30,
        max_database_bytes: 1 << 40,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::valid_page_size;

    #[test]
    fn page_sizes() {
        for ps in [512, 1024, 4096, 65536] {
            assert!(valid_page_size(ps));
        }
        for ps in [0, 1, 256, 4095, 131072, u32::MAX] {
            assert!(!valid_page_size(ps));
        }
    }
}
