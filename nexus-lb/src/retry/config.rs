use std::num::NonZeroU32;
use std::time::Duration;

use http::StatusCode;

use crate::error::ConfigError;

/// Retry settings. Defaults follow the seed (3 attempts, 200 ms delay) plus
/// exponential growth, jitter and a budget.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Attempts in total, the first included (default 3, at most 10).
    pub max_attempts: NonZeroU32,
    /// Response statuses that are retried (default 502, 503, 504).
    pub statuses: Vec<StatusCode>,
    /// Delay before the first retry (default 200 ms); doubles per retry.
    pub backoff_base: Duration,
    /// Upper bound of the delay (default 2 s).
    pub backoff_max: Duration,
    /// Share of the delay that is randomised, `0.0..=1.0` (default 0.5: the
    /// delay is uniform in `[d/2, d]`), so retries of many clients spread out.
    pub jitter: f64,
    /// Window over which the budget counts requests (default 10 s, 1..=60 s).
    pub budget_ttl: Duration,
    /// Retries per second always allowed (default 10).
    pub budget_min_per_sec: u32,
    /// Retries allowed per request, on top of the floor (default 0.2: one
    /// retry for every five requests; `0.0..=1000.0`).
    pub budget_ratio: f32,
    /// Seed for the jitter (random when `None`).
    pub seed: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            statuses: vec![
                StatusCode::BAD_GATEWAY,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::GATEWAY_TIMEOUT,
            ],
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(2),
            jitter: 0.5,
            budget_ttl: Duration::from_secs(10),
            budget_min_per_sec: 10,
            budget_ratio: 0.2,
            seed: None,
        }
    }
}

/// The most attempts accepted.
pub const MAX_ATTEMPTS: u32 = 10;

impl RetryConfig {
    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::Invalid { field, reason });
        if self.max_attempts.get() > MAX_ATTEMPTS {
            return bad("max_attempts", "must be at most 10");
        }
        if self.backoff_max < self.backoff_base {
            return bad("backoff_max", "must be at least backoff_base");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter", "must be within 0.0..=1.0");
        }
        if self.budget_ttl < Duration::from_secs(1) || self.budget_ttl > Duration::from_secs(60) {
            return bad("budget_ttl", "must be within 1 s..=60 s");
        }
        if !(0.0..=1000.0).contains(&self.budget_ratio) {
            return bad("budget_ratio", "must be within 0.0..=1000.0");
        }
        if self.budget_min_per_sec >= i32::MAX as u32 {
            return bad("budget_min_per_sec", "is too large");
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 for the first retry), with
    /// `unit` a uniform random number in `[0, 1)`.
    pub(crate) fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = 2u32.saturating_pow(retry.saturating_sub(1));
        let full = self.backoff_base.saturating_mul(exp).min(self.backoff_max);
        full.mul_f64(1.0 - self.jitter * unit)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        assert_eq!(RetryConfig::default().validate(), Ok(()));
        let c = RetryConfig {
            jitter: 2.0,
            ..RetryConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "jitter",
                ..
            })
        ));
        let c = RetryConfig {
            budget_ttl: Duration::from_secs(61),
            ..RetryConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                field: "budget_ttl",
                ..
            })
        ));
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let c = RetryConfig::default();
        assert_eq!(c.backoff(1, 0.0), Duration::from_millis(200));
        assert_eq!(c.backoff(2, 0.0), Duration::from_millis(400));
        assert_eq!(c.backoff(9, 0.0), Duration::from_secs(2));
        let j = c.backoff(1, 0.999);
        assert!(
            j > Duration::from_millis(100) && j < Duration::from_millis(101),
            "{j:?}"
        );
    }
}
