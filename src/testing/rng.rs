//! A seeded generator for tests, simulations and fuzzing.
//!
//! Its output for a seed is part of the contract: seeded tests replay from
//! it, so it never changes (`the_output_of_a_seed_is_pinned` below).

/// A SplitMix64 generator: tiny, fast, and good enough to pick faults.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1000) < per_mille as u64
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix;

    /// Seeded tests replay from these streams: they must never change.
    #[test]
    fn the_output_of_a_seed_is_pinned() {
        // SplitMix64's published reference values for seed 0.
        let mut r = SplitMix::new(0);
        assert_eq!(
            [r.next_u64(), r.next_u64(), r.next_u64()],
            [
                0xE220_A839_7B1D_CDAF,
                0x6E78_9E6A_A1B9_65F4,
                0x06C4_5D18_8009_454F
            ]
        );
        let mut r = SplitMix::new(0x5eed);
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(got, PINNED_5EED);
        let mut r = SplitMix::new(0x5eed);
        assert_eq!(
            [r.below(1000), r.below(0), r.below(7)],
            [PINNED_5EED[0] % 1000, 0, PINNED_5EED[1] % 7]
        );
        let mut r = SplitMix::new(0x5eed);
        assert!(!r.chance(0), "0 per mille never fires");
        assert!(r.chance(1000), "1000 per mille always fires");
    }

    const PINNED_5EED: [u64; 4] = [
        0x09F1_FD9D_03F0_A9B4,
        0x5532_7416_1BBF_8475,
        0x5D5B_CA46_96B3_43B3,
        0x70D2_9B6C_7D22_528D,
    ];
}
