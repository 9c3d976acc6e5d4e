//! Errors of this crate.

use std::sync::Arc;
use std::time::Duration;

/// Boxed error of an inner service.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call through the breaker failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The circuit is open (or half-open with every probe slot taken): the
    /// call was refused without touching the upstream.
    #[error("circuit for {endpoint} is open; retry after {retry_after:?}")]
    Open {
        /// The breaker's endpoint name.
        endpoint: Arc<str>,
        /// When the breaker will next admit a probe (an estimate when
        /// half-open).
        retry_after: Duration,
    },
    /// The call exceeded the configured call timeout (counted as a failure).
    #[error("call to {endpoint} timed out after {after:?}")]
    Timeout {
        /// The breaker's endpoint name.
        endpoint: Arc<str>,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The inner service failed.
    #[error(transparent)]
    Inner(BoxError),
}

impl Error {
    /// True for [`Error::Open`].
    pub fn is_open(&self) -> bool {
        matches!(self, Error::Open { .. })
    }
}

/// A configuration value was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `error_threshold_percent` outside 1..=100.
    #[error("`error_threshold_percent` must be in 1..=100, got {0}")]
    Threshold(u8),
    /// `reset_timeout` zero or over a day.
    #[error("`reset_timeout` must be between 1 ms and 1 day, got {0:?}")]
    ResetTimeout(Duration),
    /// `call_timeout` zero or over a day.
    #[error("`call_timeout` must be between 1 ms and 1 day (or none), got {0:?}")]
    CallTimeout(Option<Duration>),
    /// `window` / `window_buckets` gives buckets shorter than 1 ms, or the
    /// window is over a day, or there are more than 1000 buckets.
    #[error(
        "`window` ({window:?}) / `window_buckets` ({buckets}) must give buckets of at least 1 ms, window at most 1 day, at most 1000 buckets"
    )]
    Window {
        /// Configured window.
        window: Duration,
        /// Configured bucket count.
        buckets: u32,
    },
}

/// A [`BreakerRegistry`](crate::BreakerRegistry) is at its endpoint cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breaker registry is full ({max} endpoints)")]
pub struct RegistryFull {
    /// The cap.
    pub max: usize,
}
