//! Errors of this crate.

/// A configuration value was rejected; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `shards` must be a power of two no larger than 65,536.
    #[error("`shards` must be a power of two between 1 and 65536, got {0}")]
    Shards(usize),
    /// The refill period does not fit the limiter's nanosecond arithmetic.
    #[error("`refill period` must be between 1 ns and 1 day, got {0:?}")]
    RefillPeriod(std::time::Duration),
    /// The policy name must be a non-empty structured-field token of at most 64 characters.
    #[error(
        "`policy_name` must be 1..=64 characters of [A-Za-z0-9_.-] starting with a letter, got {0:?}"
    )]
    PolicyName(String),
}
