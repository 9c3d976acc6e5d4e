//! Gateway configuration: the YAML file ([`GatewayConfig`]) and its validated,
//! typed form ([`Settings`]).
//!
//! Validation happens once, at start; errors name the offending field.

mod dashboard;
mod raw;
mod settings;

pub use dashboard::{AdminUrl, DashboardSettings};

pub use raw::{
    AdminConfig, Algorithm, AuthConfig, BlocklistConfig, BreakerConfig, ClientConfig,
    DashboardConfig, EventsConfig, GatewayConfig, ProxyConfig, RateLimitConfig, RateLimitKey,
    RouteConfig, ServerConfig, ShutdownConfig, Strategy, TracingConfig, TransformConfig,
};
pub use settings::{
    AuthSettings, BreakerSettings, ProxySettings, RateLimitSettings, ServerSettings, Settings,
    TransformSettings,
};

/// A configuration error; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML did not parse or had an unknown key / wrongly typed value.
    #[error("config: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// A file named by the configuration could not be read.
    #[error("config: {field}: cannot read {path}: {source}")]
    Read {
        /// Field naming the file.
        field: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value is out of range or inconsistent.
    #[error("config: {field}: {reason}")]
    Invalid {
        /// Dotted path of the field, e.g. `rate_limit.capacity`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl GatewayConfig {
    /// Parses a YAML document (unknown keys are errors). An empty document gives the defaults.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        Ok(serde_yaml_ng::from_str(text)?)
    }

    /// Reads and parses a YAML file. Meant to be called once, by a binary.
    pub fn from_file(path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            field: "--config",
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text)
    }
}
