//! Rolling window of call outcomes in time buckets.
//!
//! The window is `n` buckets of equal length; a bucket is reused (and
//! cleared) when time moves `n` buckets past it, so the counts always cover
//! the last `window` (to one bucket's resolution) in O(n) memory whatever the
//! call rate.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Outcome counts over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct WindowCounts {
    /// Failed calls in the window.
    pub failures: u32,
    /// Successful calls in the window.
    pub successes: u32,
}

impl WindowCounts {
    /// All recorded calls in the window.
    pub fn total(&self) -> u32 {
        self.failures.saturating_add(self.successes)
    }
}

/// One time slice. Counters are atomics so that a success in a bucket that is
/// already current is counted without the breaker's lock; moving a bucket to
/// a new slice (and every failure) happens under the lock.
#[derive(Debug, Default)]
struct Bucket {
    /// Index of the time slice this bucket counts (`now / bucket_len`).
    epoch: AtomicU64,
    successes: AtomicU32,
    failures: AtomicU32,
}

#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

impl Window {
    pub(crate) fn new(buckets: u32, bucket_nanos: u64) -> Self {
        Self {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            bucket_nanos: bucket_nanos.max(1),
        }
    }

    fn slot(&self, now: u64) -> (u64, &Bucket) {
        let epoch = now / self.bucket_nanos;
        let n = self.buckets.len() as u64;
        (epoch, &self.buckets[(epoch % n) as usize])
    }

    /// Counts a success without the lock if its bucket is current; returns
    /// false when the bucket must first be moved to a new slice (then call
    /// [`record`](Self::record) under the lock). A success racing with that
    /// move may be counted in the neighbouring slice: the window is a
    /// statistic, not a ledger.
    pub(crate) fn try_record_success(&self, now: u64) -> bool {
        let (epoch, slot) = self.slot(now);
        if slot.epoch.load(Ordering::Acquire) != epoch {
            return false;
        }
        saturating_inc(&slot.successes);
        true
    }

    /// Counts one outcome. Callers hold the breaker's policy lock.
    pub(crate) fn record(&self, now: u64, failure: bool) {
        let (epoch, slot) = self.slot(now);
        if slot.epoch.load(Ordering::Acquire) != epoch {
            slot.successes.store(0, Ordering::Relaxed);
            slot.failures.store(0, Ordering::Relaxed);
            slot.epoch.store(epoch, Ordering::Release);
        }
        saturating_inc(if failure {
            &slot.failures
        } else {
            &slot.successes
        });
    }

    pub(crate) fn counts(&self, now: u64) -> WindowCounts {
        let epoch = now / self.bucket_nanos;
        let n = self.buckets.len() as u64;
        let mut total = WindowCounts::default();
        for b in self.buckets.iter() {
            let e = b.epoch.load(Ordering::Acquire);
            if e <= epoch && e + n > epoch {
                total.failures = total
                    .failures
                    .saturating_add(b.failures.load(Ordering::Relaxed));
                total.successes = total
                    .successes
                    .saturating_add(b.successes.load(Ordering::Relaxed));
            }
        }
        total
    }

    /// Forgets everything. Callers hold the breaker's policy lock.
    pub(crate) fn clear(&self) {
        for b in self.buckets.iter() {
            b.successes.store(0, Ordering::Relaxed);
            b.failures.store(0, Ordering::Relaxed);
        }
    }
}

fn saturating_inc(counter: &AtomicU32) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_add(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_buckets_fall_out_of_the_window() {
        let w = Window::new(4, 1_000); // 4 µs window of 1 µs buckets
        w.record(0, true);
        w.record(1_500, false);
        w.record(3_999, true);
        assert_eq!(
            w.counts(3_999),
            WindowCounts {
                failures: 2,
                successes: 1
            }
        );
        // At 4_000 the bucket of epoch 0 has left the window.
        assert_eq!(
            w.counts(4_000),
            WindowCounts {
                failures: 1,
                successes: 1
            }
        );
        // Reusing slot 0 for epoch 4 clears it first.
        w.record(4_100, false);
        assert_eq!(
            w.counts(4_100),
            WindowCounts {
                failures: 1,
                successes: 2
            }
        );
        assert_eq!(w.counts(100_000), WindowCounts::default());
        assert!(w.try_record_success(4_200), "bucket of epoch 4 is current");
        assert!(
            !w.try_record_success(5_000),
            "bucket of epoch 5 needs the lock"
        );
        assert_eq!(
            w.counts(4_200),
            WindowCounts {
                failures: 1,
                successes: 3
            }
        );
        w.clear();
        assert_eq!(w.counts(4_100), WindowCounts::default());
    }
}
