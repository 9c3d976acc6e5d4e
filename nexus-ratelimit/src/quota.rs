//! What a key is allowed: burst capacity and refill rate.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use crate::ConfigError;
use crate::clock::saturating_nanos;

/// A token-bucket quota: up to `capacity` requests at once, refilled at a
/// steady rate.
///
/// Invalid quotas are unrepresentable: capacity and rate are non-zero, and the
/// refill period is bounded so that `capacity × period` cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    capacity: NonZeroU32,
    /// Time for one token to come back (GCRA's emission interval `T`).
    period_nanos: NonZeroU64,
}

/// Longest accepted refill period (one day per token).
const MAX_PERIOD_NANOS: u64 = 86_400 * 1_000_000_000;

impl Quota {
    /// `capacity` tokens, refilled at `per_second` tokens per second.
    ///
    /// ```
    /// # use std::num::NonZeroU32;
    /// let q = nexus_ratelimit::Quota::per_second(
    ///     NonZeroU32::new(10).unwrap(),
    ///     NonZeroU32::new(2).unwrap(),
    /// );
    /// assert_eq!(q.window(), std::time::Duration::from_secs(5));
    /// ```
    pub const fn per_second(capacity: NonZeroU32, per_second: NonZeroU32) -> Self {
        let period = 1_000_000_000 / per_second.get() as u64;
        // per_second <= u32::MAX so period >= 0.23 ns; round up to 1 ns.
        let period_nanos = match NonZeroU64::new(period) {
            Some(p) => p,
            None => NonZeroU64::MIN,
        };
        Self {
            capacity,
            period_nanos,
        }
    }

    /// `capacity` tokens, one token refilled every `period` (e.g. 60/hour is
    /// `with_period(cap, Duration::from_secs(60))`).
    pub fn with_period(capacity: NonZeroU32, period: Duration) -> Result<Self, ConfigError> {
        let nanos = saturating_nanos(period);
        match NonZeroU64::new(nanos) {
            Some(p) if nanos <= MAX_PERIOD_NANOS => Ok(Self {
                capacity,
                period_nanos: p,
            }),
            _ => Err(ConfigError::RefillPeriod(period)),
        }
    }

    /// Burst size: how many requests a fresh key may make at once.
    pub const fn capacity(&self) -> u32 {
        self.capacity.get()
    }

    /// Time for one token to be refilled.
    pub const fn period(&self) -> Duration {
        Duration::from_nanos(self.period_nanos.get())
    }

    /// Time for an empty bucket to become full again (`capacity × period`);
    /// the `w` parameter of the `RateLimit-Policy` header.
    pub const fn window(&self) -> Duration {
        Duration::from_nanos(self.tau())
    }

    pub(crate) const fn period_nanos(&self) -> u64 {
        self.period_nanos.get()
    }

    /// GCRA's burst tolerance: `capacity × period`, at most ~2^32 days, no overflow.
    pub(crate) const fn tau(&self) -> u64 {
        self.capacity.get() as u64 * self.period_nanos.get()
    }
}

impl Default for Quota {
    /// The seed's bucket: 10 tokens refilled at 2 per second.
    fn default() -> Self {
        Self::per_second(nz(10), nz(2))
    }
}

/// `NonZeroU32` from a literal; only used in constant positions, where a zero
/// would fail the build rather than panic at run time.
const fn nz(v: u32) -> NonZeroU32 {
    match NonZeroU32::new(v) {
        Some(n) => n,
        None => panic!("zero literal"),
    }
}
