//! Probabilistic early expiration (XFetch; Vattani, Chierichetti and
//! Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015).
//!
//! A read of a key that expires in `ttl` refreshes it early when
//! `delta * beta * -ln(u) >= ttl`, with `u` uniform in `(0, 1]` and `delta`
//! the time a refill takes. The probability is `exp(-ttl / (delta * beta))`
//! per read: negligible while the key has many refill times left, rising
//! steeply in the last few, so with any read rate one read refreshes the key
//! shortly before it would expire. The guard then hands that reader a lease
//! (at most one per key, so at most one early miss).

use std::time::Duration;

/// Whether a read seeing `pttl_ms` (Redis `PTTL`: `-1` no expiry, `-2`
/// missing) should refresh early, for a refill time `delta` and `beta`.
/// `random` is any uniformly random `u64` (the caller owns the RNG).
pub(crate) fn fires(pttl_ms: i64, delta: Duration, beta: f64, random: u64) -> bool {
    if pttl_ms <= 0 || delta.is_zero() {
        return false;
    }
    // 53 random bits, shifted into (0, 1] so ln(u) is finite.
    let u = ((random >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let gap_ms = delta.as_secs_f64() * 1000.0 * beta * -u.ln();
    gap_ms >= pttl_ms as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn rate(pttl: i64, delta_ms: u64, beta: f64) -> f64 {
        let mut s = 7;
        let n = 100_000;
        let hits = (0..n)
            .filter(|_| {
                fires(
                    pttl,
                    Duration::from_millis(delta_ms),
                    beta,
                    splitmix(&mut s),
                )
            })
            .count();
        hits as f64 / f64::from(n)
    }

    #[test]
    fn probability_is_exp_of_minus_ttl_over_delta_beta() {
        for (pttl, delta, beta) in [(100, 50, 1.0), (50, 50, 1.0), (400, 50, 2.0), (10, 50, 0.5)] {
            let want = (-(pttl as f64) / (delta as f64 * beta)).exp();
            let got = rate(pttl, delta, beta);
            assert!(
                (got - want).abs() < 0.01,
                "{pttl}/{delta}/{beta}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn never_without_a_ttl_or_a_measured_refill() {
        assert_eq!(rate(-1, 50, 1.0), 0.0);
        assert_eq!(rate(-2, 50, 1.0), 0.0);
        assert_eq!(rate(0, 50, 1.0), 0.0);
        assert_eq!(rate(10, 0, 1.0), 0.0);
        // Extremes of the random source stay finite.
        assert!(fires(1, Duration::from_millis(1), 1.0, 0));
        assert!(!fires(1_000_000, Duration::from_millis(1), 1.0, u64::MAX));
    }
}
