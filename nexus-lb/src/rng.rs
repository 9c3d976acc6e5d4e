//! A seedable, lock-free random source: SplitMix64 over an atomic counter.
//!
//! Each draw is one `fetch_add` plus a few multiplications, so pickers on
//! many threads share it without a lock; a fixed seed makes a
//! single-threaded sequence of picks reproducible (tests, benches).

use std::sync::atomic::{AtomicU64, Ordering};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Shared SplitMix64 generator.
#[derive(Debug)]
pub(crate) struct SplitMix {
    state: AtomicU64,
}

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// A seed from the process's hasher randomness, for unseeded balancers.
    pub(crate) fn entropy() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        h.finish()
    }

    pub(crate) fn next_u64(&self) -> u64 {
        let mut z = self
            .state
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// `x` reduced to `0..n` without division (Lemire's multiply-shift).
#[inline]
pub(crate) fn below(x: u32, n: usize) -> usize {
    ((u64::from(x) * n as u64) >> 32) as usize
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a = SplitMix::new(42);
        let b = SplitMix::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let f = a.next_f64();
        assert!((0.0..1.0).contains(&f));
    }

    #[test]
    fn below_stays_in_range() {
        for n in 1..50usize {
            for x in [0u32, 1, u32::MAX / 2, u32::MAX] {
                assert!(below(x, n) < n);
            }
        }
    }
}
