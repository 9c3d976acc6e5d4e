//! Latency spike detection.

use std::collections::VecDeque;

use crate::config::LatencyConfig;

/// A detected spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// The latency that was flagged, ms.
    pub latency_ms: f64,
    /// The baseline it was compared with (mean, or EWMA), ms.
    pub baseline_ms: f64,
    /// The threshold it crossed, ms.
    pub threshold_ms: f64,
}

/// Flags latencies far above the recent baseline (see [`LatencyConfig`]).
/// Memory: one ring of `window` samples.
#[derive(Debug)]
pub struct SpikeDetector {
    config: LatencyConfig,
    window: VecDeque<f64>,
    sum: f64,
    ewma: Option<f64>,
    scratch: Vec<f64>,
}

impl SpikeDetector {
    /// A detector for a validated config.
    pub fn new(config: LatencyConfig) -> Self {
        Self {
            config,
            window: VecDeque::new(),
            sum: 0.0,
            ewma: None,
            scratch: Vec::new(),
        }
    }

    /// Compares `latency_ms` with the baseline *before* adding it, then adds it.
    pub fn observe(&mut self, latency_ms: f64) -> Option<Spike> {
        if !latency_ms.is_finite() || latency_ms < 0.0 {
            return None;
        }
        let spike = match self.config {
            LatencyConfig::RollingMean {
                factor,
                min_samples,
                ..
            } => (self.window.len() >= min_samples.max(1)).then(|| {
                let mean = self.sum / self.window.len() as f64;
                (mean, factor * mean)
            }),
            LatencyConfig::EwmaPercentile {
                factor,
                percentile,
                min_samples,
                ..
            } => match self.ewma {
                Some(ewma) if self.window.len() >= min_samples.max(1) => {
                    let p = self.percentile(percentile);
                    Some((ewma, (factor * ewma).max(p)))
                }
                _ => None,
            },
        }
        .and_then(|(baseline, threshold)| {
            (latency_ms > threshold).then_some(Spike {
                latency_ms,
                baseline_ms: baseline,
                threshold_ms: threshold,
            })
        });
        self.push(latency_ms);
        spike
    }

    fn push(&mut self, v: f64) {
        let cap = match self.config {
            LatencyConfig::RollingMean { window, .. }
            | LatencyConfig::EwmaPercentile { window, .. } => window.max(1),
        };
        if self.window.len() == cap {
            if let Some(old) = self.window.pop_front() {
                self.sum -= old;
            }
        }
        self.window.push_back(v);
        self.sum += v;
        if let LatencyConfig::EwmaPercentile { alpha, .. } = self.config {
            self.ewma = Some(match self.ewma {
                None => v,
                Some(e) => alpha * v + (1.0 - alpha) * e,
            });
        }
    }

    fn percentile(&mut self, p: f64) -> f64 {
        self.scratch.clear();
        self.scratch.extend(self.window.iter().copied());
        self.scratch.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * self.scratch.len() as f64).ceil() as usize;
        self.scratch[rank.clamp(1, self.scratch.len()) - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> SpikeDetector {
        SpikeDetector::new(LatencyConfig::default())
    }

    #[test]
    fn seed_rule_flags_three_times_the_rolling_mean() {
        let mut d = seed();
        for _ in 0..50 {
            assert_eq!(d.observe(5.0), None);
        }
        assert_eq!(d.observe(15.0), None, "exactly 3x is not above 3x");
        let s = d.observe(312.0).expect("spike");
        assert!((s.baseline_ms - (49.0 * 5.0 + 15.0) / 50.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_is_flagged_before_min_samples() {
        let mut d = seed();
        assert_eq!(d.observe(1.0), None);
        for _ in 0..8 {
            assert_eq!(d.observe(1.0), None);
        }
        assert_eq!(d.observe(1_000.0), None, "9 samples < min_samples 10");
        assert!(d.observe(10_000.0).is_some());
    }

    #[test]
    fn window_forgets_old_samples() {
        let mut d = seed();
        for _ in 0..50 {
            d.observe(100.0);
        }
        for _ in 0..50 {
            d.observe(1.0);
        }
        assert!(d.observe(10.0).is_some(), "baseline is now 1 ms, not 100");
    }

    #[test]
    fn ewma_percentile_ignores_a_naturally_wide_tail() {
        let config = LatencyConfig::EwmaPercentile {
            alpha: 0.1,
            factor: 3.0,
            window: 50,
            percentile: 99.0,
            min_samples: 10,
        };
        let mut d = SpikeDetector::new(config);
        let mut seed = SpikeDetector::new(LatencyConfig::default());
        // Mostly 5 ms with a regular 40 ms tail (every 10th request).
        let mut seed_flags = 0;
        let mut ewma_flags = 0;
        for i in 0..500 {
            let v = if i % 10 == 9 { 40.0 } else { 5.0 };
            seed_flags += usize::from(seed.observe(v).is_some());
            ewma_flags += usize::from(d.observe(v).is_some());
        }
        assert!(seed_flags > 0, "the seed rule flags the normal tail");
        assert_eq!(ewma_flags, 0, "the percentile bar absorbs the normal tail");
        assert!(d.observe(400.0).is_some(), "a real spike is still flagged");
    }
}
