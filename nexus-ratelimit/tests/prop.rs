//! Invariant: over any sequence of request times, a bucket admits at most
//! `capacity + rate × elapsed` requests.
#![allow(clippy::unwrap_used)]

use std::num::NonZeroU32;
use std::time::Duration;

use nexus_ratelimit::{KeyedLimiter, LimiterConfig, ManualClock, Quota};
use proptest::prelude::*;

proptest! {
    #[test]
    fn never_admits_more_than_capacity_plus_refill(
        capacity in 1u32..50,
        rate in 1u32..20,
        gaps in proptest::collection::vec(0u64..400_000_000, 1..400),
        keys in proptest::collection::vec(0u8..3, 400),
    ) {
        let clock = ManualClock::new();
        let quota = Quota::per_second(NonZeroU32::new(capacity).unwrap(), NonZeroU32::new(rate).unwrap());
        let limiter: KeyedLimiter<u8, ManualClock> = KeyedLimiter::with_clock(LimiterConfig::new(quota), clock.clone());
        // Per key: (first admitted time, admitted so far).
        let mut admitted: [Option<(u64, u64)>; 3] = [None; 3];
        let mut now = 0u64;
        for (gap, key) in gaps.iter().zip(keys.iter()) {
            now += gap;
            clock.set_nanos(now);
            if limiter.check(key).is_ok() {
                let slot = &mut admitted[usize::from(*key)];
                let (start, n) = slot.get_or_insert((now, 0));
                *n += 1;
                let elapsed = Duration::from_nanos(now - *start).as_secs_f64();
                let bound = f64::from(capacity) + f64::from(rate) * elapsed;
                prop_assert!((*n as f64) <= bound + 1e-9, "admitted {} > bound {}", n, bound);
            }
        }
    }

    #[test]
    fn a_fresh_key_always_gets_its_full_burst(capacity in 1u32..100, rate in 1u32..100) {
        let clock = ManualClock::new();
        clock.set_nanos(123_456_789);
        let quota = Quota::per_second(NonZeroU32::new(capacity).unwrap(), NonZeroU32::new(rate).unwrap());
        let limiter: KeyedLimiter<u8, ManualClock> = KeyedLimiter::with_clock(LimiterConfig::new(quota), clock);
        for i in 0..capacity {
            let a = limiter.check(&7).unwrap();
            prop_assert_eq!(a.remaining(), capacity - 1 - i);
        }
        prop_assert!(limiter.check(&7).is_err());
    }
}

/// Many threads racing on one key and on fresh keys never get more than the
/// bucket holds (time frozen, so nothing refills).
#[test]
fn concurrent_checks_admit_exactly_capacity() {
    let clock = ManualClock::new();
    let quota = Quota::per_second(NonZeroU32::new(100).unwrap(), NonZeroU32::new(1).unwrap());
    let limiter: KeyedLimiter<u64, ManualClock> =
        KeyedLimiter::with_clock(LimiterConfig::new(quota), clock);
    let admitted = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for i in 0..1_000u64 {
                    // Key 0 is shared by every thread; keys 1..=10 are raced
                    // into the table concurrently.
                    for key in [0, 1 + i % 10] {
                        if limiter.check(&key).is_ok() {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 100 * 11);
    assert_eq!(limiter.len(), 11);
}
