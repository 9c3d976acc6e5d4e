//! Lock-free peak EWMA of response latency (the estimator of
//! `tower::load::PeakEwma`, packed into one atomic word).
//!
//! tower keeps its estimate behind a `Mutex` per endpoint; a pick reads two
//! endpoints' estimates, so we keep the estimate and its timestamp in one
//! `AtomicU64` (high half: estimate in nanoseconds as `f32`; low half:
//! milliseconds since the balancer's epoch, wrapping) and update it by CAS.
//!
//! Semantics, as in tower: an observation above the estimate replaces it
//! (the peak); a lower one is blended in with weight `1 - exp(-elapsed/decay)`.
//! Reads decay the estimate toward zero for the time since the last update
//! (without writing), so an endpoint that has not answered for a while is
//! tried again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Clock shared by all endpoints of one balancer: an epoch, so that
/// timestamps fit in 32 bits of milliseconds (wrapping; an elapsed time
/// beyond ~24 days aliases, which only matters if an endpoint is
/// idle that long and then only for one blend), and a coarse "now".
///
/// Reading the system clock costs tens of nanoseconds (more on virtual
/// machines without a vDSO clock source), more than the rest of a P2C pick.
/// So picks read [`Clock::coarse_ms`]: the time of the latest latency
/// observation on any endpoint of the balancer, which every completion
/// refreshes. Under traffic it lags by at most the gap between two
/// completions; after an idle period the first picks decay the estimates a
/// little less than they should, until the first completion refreshes it.
#[derive(Debug, Clone)]
pub(crate) struct Clock {
    epoch: Instant,
    coarse: Arc<AtomicU32>,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            epoch: Instant::now(),
            coarse: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Milliseconds from the epoch to `at`, truncated to 32 bits.
    pub(crate) fn ms_at(&self, at: Instant) -> u32 {
        // Truncation is the documented wrap.
        #[allow(clippy::cast_possible_truncation)]
        let ms = at.saturating_duration_since(self.epoch).as_millis() as u32;
        ms
    }

    /// Milliseconds since the epoch (reads the clock, refreshes the coarse one).
    pub(crate) fn now_ms(&self) -> u32 {
        let ms = self.ms_at(Instant::now());
        self.coarse.store(ms, Ordering::Relaxed);
        ms
    }

    /// Records that the time is `ms` (taken from a clock read elsewhere).
    pub(crate) fn touch(&self, ms: u32) {
        self.coarse.store(ms, Ordering::Relaxed);
    }

    /// The last time recorded by [`now_ms`](Self::now_ms) or
    /// [`touch`](Self::touch): no clock read.
    #[inline]
    pub(crate) fn coarse_ms(&self) -> u32 {
        self.coarse.load(Ordering::Relaxed)
    }
}

/// Peak-EWMA state of one endpoint.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    packed: AtomicU64,
}

fn pack(estimate_ns: f32, at_ms: u32) -> u64 {
    (u64::from(estimate_ns.to_bits()) << 32) | u64::from(at_ms)
}

fn unpack(word: u64) -> (f32, u32) {
    #[allow(clippy::cast_possible_truncation)]
    let at = word as u32;
    #[allow(clippy::cast_possible_truncation)]
    let est = f32::from_bits((word >> 32) as u32);
    (est, at)
}

/// `exp(-elapsed / decay)` for the time from `at` to `now` (wrapping
/// milliseconds). A `now` slightly *before* `at` — the coarse clock can lag
/// an observation made a moment ago on another thread — counts as no time.
fn decay_factor(now: u32, at: u32, decay_ms: f32) -> f32 {
    // Signed difference: correct across the u32 wrap for gaps < ~24 days.
    #[allow(clippy::cast_possible_wrap)]
    let elapsed = now.wrapping_sub(at) as i32;
    if elapsed <= 0 {
        1.0
    } else {
        (-(elapsed as f32) / decay_ms).exp()
    }
}

impl PeakEwma {
    pub(crate) fn new(default_rtt: Duration, now_ms: u32) -> Self {
        Self {
            packed: AtomicU64::new(pack(default_rtt.as_nanos() as f32, now_ms)),
        }
    }

    /// The estimate in nanoseconds at `now_ms`, decayed toward zero since the
    /// last observation.
    pub(crate) fn estimate_ns(&self, now_ms: u32, decay_ms: f32) -> f32 {
        let (est, at) = unpack(self.packed.load(Ordering::Relaxed));
        est * decay_factor(now_ms, at, decay_ms)
    }

    /// Folds one observed latency into the estimate.
    pub(crate) fn observe(&self, rtt: Duration, now_ms: u32, decay_ms: f32) {
        let rtt_ns = rtt.as_nanos() as f32;
        let mut cur = self.packed.load(Ordering::Relaxed);
        loop {
            let (est, at) = unpack(cur);
            let next = if rtt_ns > est {
                rtt_ns
            } else {
                let w = decay_factor(now_ms, at, decay_ms);
                est * w + rtt_ns * (1.0 - w)
            };
            match self.packed.compare_exchange_weak(
                cur,
                pack(next, now_ms),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DECAY: f32 = 10_000.0;

    #[tokio::test(start_paused = true)]
    async fn peak_is_taken_immediately_and_decays_with_time() {
        let clock = Clock::new();
        let e = PeakEwma::new(Duration::from_millis(30), clock.now_ms());
        assert!((e.estimate_ns(clock.now_ms(), DECAY) - 30e6).abs() < 1.0);
        tokio::time::advance(Duration::from_millis(7)).await;
        assert_eq!(
            clock.coarse_ms(),
            0,
            "the coarse clock moves only when read"
        );
        assert_eq!(clock.now_ms(), 7);
        assert_eq!(clock.coarse_ms(), 7);

        e.observe(Duration::from_millis(500), clock.now_ms(), DECAY);
        assert!((e.estimate_ns(clock.now_ms(), DECAY) - 500e6).abs() < 1.0);

        // One decay period later the read-side estimate is 1/e of the peak.
        tokio::time::advance(Duration::from_secs(10)).await;
        let decayed = e.estimate_ns(clock.now_ms(), DECAY);
        let expected = 500e6 * (-1.0f32).exp();
        assert!((decayed - expected).abs() / expected < 1e-3, "{decayed}");
    }

    #[test]
    fn a_lagging_now_does_not_decay() {
        let e = PeakEwma::new(Duration::from_millis(30), 100);
        assert!((e.estimate_ns(99, DECAY) - 30e6).abs() < 1.0);
        // Across the u32 wrap.
        let e = PeakEwma::new(Duration::from_millis(30), u32::MAX - 5);
        let later = e.estimate_ns(10_000 - 6, DECAY);
        assert!((later - 30e6 * (-1.0f32).exp()).abs() < 1e3, "{later}");
    }

    #[tokio::test(start_paused = true)]
    async fn lower_observations_blend_by_elapsed_time() {
        let clock = Clock::new();
        let e = PeakEwma::new(Duration::from_millis(100), clock.now_ms());
        // No time elapsed: a lower sample does not move the estimate.
        e.observe(Duration::from_millis(10), clock.now_ms(), DECAY);
        assert!((e.estimate_ns(clock.now_ms(), DECAY) - 100e6).abs() < 1.0);

        tokio::time::advance(Duration::from_secs(5)).await;
        e.observe(Duration::from_millis(10), clock.now_ms(), DECAY);
        let w = (-0.5f32).exp();
        let expected = 100e6 * w + 10e6 * (1.0 - w);
        let got = e.estimate_ns(clock.now_ms(), DECAY);
        assert!(
            (got - expected).abs() / expected < 1e-3,
            "{got} vs {expected}"
        );
    }
}
