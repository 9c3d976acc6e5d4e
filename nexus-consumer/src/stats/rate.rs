//! Events per second over a short sliding window of one-second buckets.

use std::time::Duration;

use tokio::time::Instant;

/// Seconds covered by the events-per-second window (and number of buckets:
/// the memory bound).
pub const WINDOW_SECS: u64 = 10;

/// A ring of [`WINDOW_SECS`] buckets `(second, count)`; a bucket whose
/// second is too old counts as empty and is reused.
#[derive(Debug)]
pub(crate) struct RateWindow {
    origin: Instant,
    buckets: [(u64, u64); WINDOW_SECS as usize],
}

impl RateWindow {
    pub(crate) fn new(origin: Instant) -> Self {
        Self {
            origin,
            // Second `u64::MAX` never matches a live second: empty.
            buckets: [(u64::MAX, 0); WINDOW_SECS as usize],
        }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    pub(crate) fn record(&mut self, now: Instant, n: u64) {
        let sec = self.second(now);
        let slot = &mut self.buckets[(sec % WINDOW_SECS) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += n;
    }

    /// Average rate over the last [`WINDOW_SECS`] seconds (or since the
    /// origin, when younger), the current partial second included.
    pub(crate) fn per_second(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.origin);
        let sec = elapsed.as_secs();
        let oldest = sec.saturating_sub(WINDOW_SECS - 1);
        let count: u64 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s != u64::MAX && *s >= oldest && *s <= sec)
            .map(|(_, c)| c)
            .sum();
        // Span covered: the full buckets before the current one, plus the
        // part of the current second already gone.
        let partial = elapsed - Duration::from_secs(sec);
        let span = Duration::from_secs(sec - oldest) + partial;
        let span = span.max(Duration::from_millis(100)).as_secs_f64();
        count as f64 / span
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rate_over_the_window_then_decays_to_zero() {
        let t0 = Instant::now();
        let mut w = RateWindow::new(t0);
        // 20 events per second for 12 seconds.
        for s in 0..12 {
            for i in 0..20 {
                w.record(t0 + Duration::from_millis(s * 1000 + i * 50), 1);
            }
        }
        let now = t0 + Duration::from_secs(12);
        let r = w.per_second(now);
        assert!((r - 20.0).abs() < 0.01, "{r}");
        // Young window: 5 events in the first half second.
        let mut y = RateWindow::new(t0);
        y.record(t0, 5);
        let r = y.per_second(t0 + Duration::from_millis(500));
        assert!((r - 10.0).abs() < 0.01, "{r}");
        // Nothing for a whole window: zero, whatever the ring still holds.
        assert_eq!(w.per_second(now + Duration::from_secs(WINDOW_SECS)), 0.0);
    }
}
