//! Validated limiter configuration.

use std::num::{NonZeroU32, NonZeroUsize};

use serde::Deserialize;

use crate::{ConfigError, Quota};

/// Default cap on tracked keys.
pub const DEFAULT_MAX_KEYS: usize = 1 << 20;
/// Default number of shards.
pub const DEFAULT_SHARDS: usize = 64;

/// Validated configuration of a [`KeyedLimiter`](crate::KeyedLimiter).
///
/// Deserializes (with unknown fields denied) from
/// `{ capacity, refill_per_second, max_keys, shards }`, every field optional,
/// defaults being the seed's 10 tokens at 2/s, 1,048,576 keys and 64 shards.
///
/// ```
/// let cfg: nexus_ratelimit::LimiterConfig =
///     serde_json::from_str(r#"{"capacity": 20, "refill_per_second": 5}"#).unwrap();
/// assert_eq!(cfg.quota().capacity(), 20);
/// assert!(serde_json::from_str::<nexus_ratelimit::LimiterConfig>(r#"{"capacity": 0}"#).is_err());
/// assert!(serde_json::from_str::<nexus_ratelimit::LimiterConfig>(r#"{"shards": 3}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "LimiterSettings")]
pub struct LimiterConfig {
    quota: Quota,
    max_keys: NonZeroUsize,
    shards: usize,
}

impl LimiterConfig {
    /// `quota` per key, with the default key cap and shard count.
    pub fn new(quota: Quota) -> Self {
        Self {
            quota,
            max_keys: NonZeroUsize::new(DEFAULT_MAX_KEYS).unwrap_or(NonZeroUsize::MIN),
            shards: DEFAULT_SHARDS,
        }
    }

    /// Caps the number of keys tracked at once (rounded up to a multiple of
    /// the shard count). See [`KeyedLimiter`](crate::KeyedLimiter) for what
    /// happens at the cap.
    pub fn with_max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Sets the number of shards: a power of two in `1..=65536`.
    pub fn with_shards(mut self, shards: usize) -> Result<Self, ConfigError> {
        if !shards.is_power_of_two() || shards > 65_536 {
            return Err(ConfigError::Shards(shards));
        }
        self.shards = shards;
        Ok(self)
    }

    /// The per-key quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// Most keys tracked at once.
    pub fn max_keys(&self) -> NonZeroUsize {
        self.max_keys
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self::new(Quota::default())
    }
}

/// The serialized form of [`LimiterConfig`], before validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimiterSettings {
    /// Bucket size (burst), default 10.
    pub capacity: NonZeroU32,
    /// Tokens refilled per second, default 2.
    pub refill_per_second: NonZeroU32,
    /// Cap on tracked keys, default 1,048,576.
    pub max_keys: NonZeroUsize,
    /// Shard count (power of two), default 64.
    pub shards: usize,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        let d = LimiterConfig::default();
        Self {
            capacity: NonZeroU32::new(d.quota.capacity()).unwrap_or(NonZeroU32::MIN),
            refill_per_second: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            max_keys: d.max_keys,
            shards: d.shards,
        }
    }
}

impl TryFrom<LimiterSettings> for LimiterConfig {
    type Error = ConfigError;

    fn try_from(s: LimiterSettings) -> Result<Self, ConfigError> {
        LimiterConfig::new(Quota::per_second(s.capacity, s.refill_per_second))
            .with_max_keys(s.max_keys)
            .with_shards(s.shards)
    }
}
