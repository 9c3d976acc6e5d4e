//! The generic cell rate algorithm (GCRA) on one atomic word.
//!
//! GCRA is a token bucket expressed as a single timestamp: the *theoretical
//! arrival time* (TAT) at which the bucket would be full again. With emission
//! interval `T` (one token's refill time) and tolerance `τ = capacity × T`, a
//! request at `now` is admitted iff `max(TAT, now) + T - now ≤ τ`, and then
//! `TAT ← max(TAT, now) + T`. A TAT at or before `now` means a full bucket, so
//! such a key carries no information and may be forgotten (eviction).
//!
//! The state is one `AtomicU64` updated by compare-and-swap: no lock, O(1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::Quota;

/// The request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    remaining: u32,
    reset_after: Duration,
}

impl Allowed {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) const fn new(remaining: u32, reset_after: Duration) -> Self {
        Self {
            remaining,
            reset_after,
        }
    }

    /// Whole tokens left after this request.
    pub const fn remaining(&self) -> u32 {
        self.remaining
    }

    /// Time until the bucket is full again.
    pub const fn reset_after(&self) -> Duration {
        self.reset_after
    }
}

/// The request was refused: the bucket is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllowed {
    retry_after: Duration,
    reset_after: Duration,
}

impl NotAllowed {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) const fn new(retry_after: Duration, reset_after: Duration) -> Self {
        Self {
            retry_after,
            reset_after,
        }
    }

    /// Earliest time after which the same request would be admitted.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// Time until the bucket is full again.
    pub const fn reset_after(&self) -> Duration {
        self.reset_after
    }
}

/// Outcome of one check.
pub type Decision = Result<Allowed, NotAllowed>;

/// One GCRA step against `cell` at time `now` (nanoseconds).
#[inline]
pub(crate) fn check(quota: &Quota, cell: &AtomicU64, now: u64) -> Decision {
    let t = quota.period_nanos();
    let tau = quota.tau();
    let limit = now.saturating_add(tau);
    let mut tat = cell.load(Ordering::Relaxed);
    loop {
        let new_tat = tat.max(now).saturating_add(t);
        if new_tat > limit {
            return Err(NotAllowed {
                retry_after: Duration::from_nanos(new_tat - limit),
                reset_after: Duration::from_nanos(tat.saturating_sub(now)),
            });
        }
        match cell.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                let remaining = (limit - new_tat) / t;
                return Ok(Allowed {
                    remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
                    reset_after: Duration::from_nanos(new_tat - now),
                });
            }
            Err(actual) => tat = actual,
        }
    }
}

/// True when the bucket behind `cell` is full at `now`, so the key can be
/// forgotten without changing any future decision.
#[inline]
pub(crate) fn is_idle(cell: &AtomicU64, now: u64) -> bool {
    cell.load(Ordering::Relaxed) <= now
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn burst_then_refill() {
        let q = Quota::default(); // 10 tokens, 2/s
        let cell = AtomicU64::new(0);
        let now = 1_000_000_000;
        for i in 0..10 {
            let a = check(&q, &cell, now).unwrap();
            assert_eq!(a.remaining(), 9 - i);
        }
        let denied = check(&q, &cell, now).unwrap_err();
        assert_eq!(denied.retry_after(), Duration::from_millis(500));
        assert_eq!(denied.reset_after(), Duration::from_secs(5));
        // 499 ms later: still empty; 500 ms later: one token.
        assert!(check(&q, &cell, now + 499_000_000).is_err());
        let a = check(&q, &cell, now + 500_000_000).unwrap();
        assert_eq!(a.remaining(), 0);
        assert!(!is_idle(&cell, now + 500_000_000));
        assert!(is_idle(&cell, now + 5_500_000_000));
    }

    #[test]
    fn clock_going_backwards_does_not_panic_or_grant_extra() {
        let q = Quota::default();
        let cell = AtomicU64::new(0);
        for _ in 0..10 {
            check(&q, &cell, 10_000_000_000).unwrap();
        }
        assert!(check(&q, &cell, 0).is_err());
        assert!(check(&q, &cell, 9_000_000_000).is_err());
    }
}
