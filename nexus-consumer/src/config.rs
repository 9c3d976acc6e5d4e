//! Typed configuration of the consumer service, validated once.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Everything the consumer service needs. Deserializable (YAML/JSON) with
/// `deny_unknown_fields`; durations are in milliseconds in files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct ServiceConfig {
    /// Kafka bootstrap list, `host:port[,host:port]`.
    pub kafka_bootstrap: String,
    /// Consumer group id.
    #[serde(default = "defaults::group")]
    pub group_id: String,
    /// Redis URL where the blocklist lives (`redis://host:port[/db]`).
    pub redis_url: String,
    /// Kafka session timeout, milliseconds.
    #[serde(default = "defaults::session_ms")]
    pub session_timeout_ms: u64,
    /// Auto-block settings.
    #[serde(default)]
    pub block: BlockConfig,
    /// Circuit alert settings.
    #[serde(default)]
    pub alerts: AlertConfig,
    /// Latency spike detection settings.
    #[serde(default)]
    pub latency: LatencyConfig,
    /// Where the admin HTTP server (`/metrics`, `/stats`, `/healthz`)
    /// listens, e.g. `127.0.0.1:9381`; none: no admin server. Needs the
    /// crate's `admin` feature: without it a set address is a
    /// [`ConfigError`] on field `admin`.
    #[serde(default)]
    pub admin: Option<SocketAddr>,
}

/// Auto-blocking of IPs that keep hitting the rate limiter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockConfig {
    /// Hits within `window_ms` that trigger a block (seed: 5).
    pub threshold: u32,
    /// Sliding window, milliseconds.
    pub window_ms: u64,
    /// How long a block lasts (Redis `PX`), milliseconds.
    pub block_ms: u64,
    /// Most IPs tracked at once (bounds memory; see `RateLimitHandler`).
    pub max_tracked_ips: usize,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            window_ms: 60_000,
            block_ms: 15 * 60_000,
            max_tracked_ips: 100_000,
        }
    }
}

/// Circuit-opened alerts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// Optional `http://` URL receiving a JSON POST per alert.
    pub webhook_url: Option<String>,
}

/// Latency spike detector choice.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, tag = "mode", rename_all = "snake_case")]
pub enum LatencyConfig {
    /// The seed's rule: spike when latency > `factor` x mean of the last
    /// `window` latencies (seed: 50 and 3.0), once `min_samples` are known.
    RollingMean {
        /// Samples kept.
        window: usize,
        /// Multiple of the mean that counts as a spike.
        factor: f64,
        /// Samples needed before anything is flagged.
        min_samples: usize,
    },
    /// Better behaved under skewed latencies: spike when latency exceeds both
    /// `factor` x an EWMA (weight `alpha`) and the `percentile` of the last
    /// `window` latencies. A single slow outlier cannot drag the baseline as
    /// far as it drags a mean, and a naturally wide distribution raises the
    /// percentile bar instead of flagging its tail.
    EwmaPercentile {
        /// EWMA weight of a new sample, in (0, 1].
        alpha: f64,
        /// Multiple of the EWMA that counts as a spike.
        factor: f64,
        /// Samples kept for the percentile.
        window: usize,
        /// Percentile in (0, 100], e.g. 99.
        percentile: f64,
        /// Samples needed before anything is flagged.
        min_samples: usize,
    },
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self::RollingMean {
            window: 50,
            factor: 3.0,
            min_samples: 10,
        }
    }
}

mod defaults {
    pub(super) fn group() -> String {
        "nexus-consumer-group".to_owned()
    }
    pub(super) fn session_ms() -> u64 {
        10_000
    }
}

/// A configuration value out of range; names the field.
#[derive(Debug, thiserror::Error)]
#[error("consumer config: `{field}` {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl ServiceConfig {
    /// Defaults for the given Kafka bootstrap list and Redis URL.
    pub fn new(kafka_bootstrap: &str, redis_url: &str) -> Self {
        Self {
            kafka_bootstrap: kafka_bootstrap.to_owned(),
            group_id: defaults::group(),
            redis_url: redis_url.to_owned(),
            session_timeout_ms: defaults::session_ms(),
            block: BlockConfig::default(),
            alerts: AlertConfig::default(),
            latency: LatencyConfig::default(),
            admin: None,
        }
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let c: Self = serde_json::from_str(text).map_err(|e| bad("(document)", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every field; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_admin(self.admin, cfg!(feature = "admin"))?;
        if self.kafka_bootstrap.trim().is_empty() {
            return Err(bad("kafka_bootstrap", "is empty"));
        }
        if self.group_id.is_empty() {
            return Err(bad("group_id", "is empty"));
        }
        if !self.redis_url.starts_with("redis://") {
            return Err(bad("redis_url", "must start with redis://"));
        }
        if self.session_timeout_ms < 1_000 {
            return Err(bad("session_timeout_ms", "must be at least 1000"));
        }
        let b = &self.block;
        if b.threshold == 0 {
            return Err(bad("block.threshold", "must be positive"));
        }
        if b.window_ms == 0 || b.block_ms == 0 {
            return Err(bad("block.window_ms/block_ms", "must be positive"));
        }
        if b.max_tracked_ips == 0 {
            return Err(bad("block.max_tracked_ips", "must be positive"));
        }
        if let Some(url) = &self.alerts.webhook_url {
            crate::webhook::Webhook::parse(url).map_err(|e| bad("alerts.webhook_url", e))?;
        }
        match self.latency {
            LatencyConfig::RollingMean {
                window,
                factor,
                min_samples,
            } => {
                if window == 0 || min_samples > window {
                    return Err(bad("latency.window", "must be positive and >= min_samples"));
                }
                if !(factor > 1.0 && factor.is_finite()) {
                    return Err(bad("latency.factor", "must be a finite number > 1"));
                }
            }
            LatencyConfig::EwmaPercentile {
                alpha,
                factor,
                window,
                percentile,
                min_samples,
            } => {
                if !(alpha > 0.0 && alpha <= 1.0) {
                    return Err(bad("latency.alpha", "must be in (0, 1]"));
                }
                if !(factor > 1.0 && factor.is_finite()) {
                    return Err(bad("latency.factor", "must be a finite number > 1"));
                }
                if window == 0 || min_samples > window {
                    return Err(bad("latency.window", "must be positive and >= min_samples"));
                }
                if !(percentile > 0.0 && percentile <= 100.0) {
                    return Err(bad("latency.percentile", "must be in (0, 100]"));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
}

/// An admin address needs the admin server compiled in (`compiled`).
fn check_admin(admin: Option<SocketAddr>, compiled: bool) -> Result<(), ConfigError> {
    match admin {
        Some(addr) if !compiled => Err(bad(
            "admin",
            format!(
                "is set ({addr}) but nexus-consumer was built without its `admin` feature; \
                 enable the feature or remove the address"
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_admin_address_without_the_admin_feature_is_refused() {
        let addr: SocketAddr = "127.0.0.1:9381".parse().unwrap();
        let err = check_admin(Some(addr), false).unwrap_err();
        assert_eq!(err.field, "admin");
        assert!(err.to_string().contains("`admin` feature"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:9381"), "{err}");
        check_admin(Some(addr), true).unwrap();
        check_admin(None, false).unwrap();
        check_admin(None, true).unwrap();
        // What validate() does in this build.
        let mut c = ServiceConfig::new("k:1", "redis://x");
        c.admin = Some(addr);
        assert_eq!(c.validate().is_ok(), cfg!(feature = "admin"));
    }

    #[test]
    fn json_with_defaults_and_each_bad_field_named() {
        let c = ServiceConfig::from_json(
            r#"{"kafka_bootstrap":"127.0.0.1:9092","redis_url":"redis://127.0.0.1:6379",
                "latency":{"mode":"ewma_percentile","alpha":0.2,"factor":3.0,"window":50,"percentile":99.0,"min_samples":10}}"#,
        )
        .unwrap();
        assert_eq!(c.group_id, "nexus-consumer-group");
        assert_eq!(c.block.threshold, 5);
        assert!(matches!(c.latency, LatencyConfig::EwmaPercentile { .. }));
        assert_eq!(c.admin, None);
        let c = ServiceConfig::from_json(
            r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","admin":"127.0.0.1:9381"}"#,
        )
        .unwrap();
        assert_eq!(c.admin, Some("127.0.0.1:9381".parse().unwrap()));

        let cases = [
            (
                r#"{"kafka_bootstrap":"","redis_url":"redis://x"}"#,
                "kafka_bootstrap",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"http://x"}"#,
                "redis_url",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","block":{"threshold":0,"window_ms":1,"block_ms":1,"max_tracked_ips":1}}"#,
                "block.threshold",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","alerts":{"webhook_url":"https://h/x"}}"#,
                "alerts.webhook_url",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","latency":{"mode":"rolling_mean","window":50,"factor":0.5,"min_samples":1}}"#,
                "latency.factor",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","surprise":1}"#,
                "(document)",
            ),
            (
                r#"{"kafka_bootstrap":"k:1","redis_url":"redis://x","admin":"localhost"}"#,
                "(document)",
            ),
        ];
        for (json, field) in cases {
            let err = ServiceConfig::from_json(json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
        }
    }
}
