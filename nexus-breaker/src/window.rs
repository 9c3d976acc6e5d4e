//! Rolling window of call outcomes in time buckets.
//!
//! The window is `n` buckets of equal length; a bucket is reused (and
//! cleared) when time moves `n` buckets past it, so the counts always cover
//! the last `window` (to one bucket's resolution) in O(n) memory whatever the
//! call rate.

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

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Index of the time slice this bucket counts (`now / bucket_len`).
    epoch: u64,
    counts: WindowCounts,
}

#[derive(Debug)]
pub(crate) struct Window {
    buckets: Box<[Bucket]>,
    bucket_nanos: u64,
}

impl Window {
    pub(crate) fn new(buckets: u32, bucket_nanos: u64) -> Self {
        Self {
            buckets: vec![Bucket::default(); buckets as usize].into_boxed_slice(),
            bucket_nanos: bucket_nanos.max(1),
        }
    }

    pub(crate) fn record(&mut self, now: u64, failure: bool) {
        let epoch = now / self.bucket_nanos;
        let n = self.buckets.len() as u64;
        let slot = &mut self.buckets[(epoch % n) as usize];
        if slot.epoch != epoch {
            *slot = Bucket {
                epoch,
                counts: WindowCounts::default(),
            };
        }
        let c = &mut slot.counts;
        if failure {
            c.failures = c.failures.saturating_add(1);
        } else {
            c.successes = c.successes.saturating_add(1);
        }
    }

    pub(crate) fn counts(&self, now: u64) -> WindowCounts {
        let epoch = now / self.bucket_nanos;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.epoch <= epoch && b.epoch + n > epoch)
            .fold(WindowCounts::default(), |acc, b| WindowCounts {
                failures: acc.failures.saturating_add(b.counts.failures),
                successes: acc.successes.saturating_add(b.counts.successes),
            })
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_buckets_fall_out_of_the_window() {
        let mut w = Window::new(4, 1_000); // 4 µs window of 1 µs buckets
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
        w.clear();
        assert_eq!(w.counts(4_100), WindowCounts::default());
    }
}
