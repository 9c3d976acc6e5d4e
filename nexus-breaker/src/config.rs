//! Breaker configuration, validated once.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigError;

/// How a [`Breaker`](crate::Breaker) decides to open and to close.
///
/// Defaults are the seed's: open when more than 50% of calls failed over the
/// last 10 s once at least 3 calls were seen, stay open 10 s, then admit 1
/// probe; one successful probe closes; calls time out after 5 s.
///
/// Deserializes (unknown fields denied, every field optional) from
/// `{ error_threshold_percent, volume_threshold, reset_timeout_ms,
/// call_timeout_ms (0 = none), window_ms, window_buckets, half_open_probes,
/// successes_to_close }`.
///
/// ```
/// let cfg: nexus_breaker::BreakerConfig =
///     serde_json::from_str(r#"{"error_threshold_percent": 25, "reset_timeout_ms": 2000}"#).unwrap();
/// assert_eq!(cfg.reset_timeout, std::time::Duration::from_secs(2));
/// assert!(serde_json::from_str::<nexus_breaker::BreakerConfig>(r#"{"error_threshold_percent": 0}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BreakerSettings")]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Open when the failure share over the window is strictly above this
    /// percentage (1..=100).
    pub error_threshold_percent: u8,
    /// Minimum calls in the window before the breaker may open.
    pub volume_threshold: NonZeroU32,
    /// How long an open breaker rejects before admitting probes.
    pub reset_timeout: Duration,
    /// Deadline of one call through the layer; a call that exceeds it fails
    /// with [`Error::Timeout`](crate::Error::Timeout) and counts as a failure.
    pub call_timeout: Option<Duration>,
    /// Length of the rolling window of outcomes.
    pub window: Duration,
    /// Number of time buckets the window is split into (its resolution).
    pub window_buckets: NonZeroU32,
    /// Calls admitted at once while half-open.
    pub half_open_probes: NonZeroU32,
    /// Successful probes needed to close; a failed probe reopens.
    pub successes_to_close: NonZeroU32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            error_threshold_percent: 50,
            volume_threshold: nz(3),
            reset_timeout: Duration::from_secs(10),
            call_timeout: Some(Duration::from_secs(5)),
            window: Duration::from_secs(10),
            window_buckets: nz(10),
            half_open_probes: nz(1),
            successes_to_close: nz(1),
        }
    }
}

impl BreakerConfig {
    /// Checks the relations between fields; every constructor of a
    /// [`Breaker`](crate::Breaker) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=100).contains(&self.error_threshold_percent) {
            return Err(ConfigError::Threshold(self.error_threshold_percent));
        }
        if self.reset_timeout.is_zero() || self.reset_timeout > MAX_DURATION {
            return Err(ConfigError::ResetTimeout(self.reset_timeout));
        }
        if self
            .call_timeout
            .is_some_and(|t| t.is_zero() || t > MAX_DURATION)
        {
            return Err(ConfigError::CallTimeout(self.call_timeout));
        }
        let bucket_ms = self.window.as_millis() / u128::from(self.window_buckets.get());
        if bucket_ms == 0 || self.window > MAX_DURATION || self.window_buckets.get() > 1_000 {
            return Err(ConfigError::Window {
                window: self.window,
                buckets: self.window_buckets.get(),
            });
        }
        Ok(())
    }

    /// Length of one window bucket.
    pub(crate) fn bucket(&self) -> Duration {
        self.window / self.window_buckets.get()
    }
}

/// Longest accepted timeout or window (one day).
const MAX_DURATION: Duration = Duration::from_secs(86_400);

const fn nz(v: u32) -> NonZeroU32 {
    match NonZeroU32::new(v) {
        Some(n) => n,
        None => panic!("zero literal"),
    }
}

/// The serialized form of [`BreakerConfig`], before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSettings {
    /// See [`BreakerConfig::error_threshold_percent`].
    pub error_threshold_percent: u8,
    /// See [`BreakerConfig::volume_threshold`].
    pub volume_threshold: NonZeroU32,
    /// See [`BreakerConfig::reset_timeout`], in milliseconds.
    pub reset_timeout_ms: u64,
    /// See [`BreakerConfig::call_timeout`], in milliseconds; 0 disables it.
    pub call_timeout_ms: u64,
    /// See [`BreakerConfig::window`], in milliseconds.
    pub window_ms: u64,
    /// See [`BreakerConfig::window_buckets`].
    pub window_buckets: NonZeroU32,
    /// See [`BreakerConfig::half_open_probes`].
    pub half_open_probes: NonZeroU32,
    /// See [`BreakerConfig::successes_to_close`].
    pub successes_to_close: NonZeroU32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        let d = BreakerConfig::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            error_threshold_percent: d.error_threshold_percent,
            volume_threshold: d.volume_threshold,
            reset_timeout_ms: ms(d.reset_timeout),
            call_timeout_ms: d.call_timeout.map_or(0, ms),
            window_ms: ms(d.window),
            window_buckets: d.window_buckets,
            half_open_probes: d.half_open_probes,
            successes_to_close: d.successes_to_close,
        }
    }
}

impl TryFrom<BreakerSettings> for BreakerConfig {
    type Error = ConfigError;

    fn try_from(s: BreakerSettings) -> Result<Self, ConfigError> {
        let cfg = BreakerConfig {
            error_threshold_percent: s.error_threshold_percent,
            volume_threshold: s.volume_threshold,
            reset_timeout: Duration::from_millis(s.reset_timeout_ms),
            call_timeout: (s.call_timeout_ms > 0).then(|| Duration::from_millis(s.call_timeout_ms)),
            window: Duration::from_millis(s.window_ms),
            window_buckets: s.window_buckets,
            half_open_probes: s.half_open_probes,
            successes_to_close: s.successes_to_close,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
