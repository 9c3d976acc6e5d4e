//! Errors of this crate: configuration errors (typed, naming the field) and
//! the errors a balanced request can fail with.

use std::sync::Arc;

/// A boxed error, as passed between tower layers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid endpoint set or balancer/retry/health configuration.
///
/// Every variant names the field (or the file entry) at fault so that an
/// operator can fix it from the log line alone.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// An endpoint URL that is not `http://host:port` or `https://host:port`.
    #[error("endpoint url {url:?} is invalid: {reason}")]
    InvalidUrl {
        /// The URL as written.
        url: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A weight outside `1..=MAX_WEIGHT`.
    #[error("endpoint {url:?}: weight {weight} is out of range 1..={max}")]
    InvalidWeight {
        /// The endpoint's URL.
        url: String,
        /// The weight as written.
        weight: u64,
        /// The largest weight accepted.
        max: u32,
    },
    /// The same endpoint listed twice.
    #[error("endpoint {url:?} is listed more than once")]
    DuplicateEndpoint {
        /// The endpoint's URL.
        url: String,
    },
    /// More endpoints than the balancer accepts.
    #[error("{count} endpoints exceed the limit of {max}")]
    TooManyEndpoints {
        /// How many endpoints were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A services file that could not be parsed.
    #[error("services file is not valid: {0}")]
    Parse(String),
    /// A services file larger than the accepted size.
    #[error("services file is {len} bytes, more than the limit of {max}")]
    FileTooLarge {
        /// The file's size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Any other field of a configuration struct that is out of range.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a balanced request failed. Passed on as a [`BoxError`] by
/// [`Lb`](crate::Lb); downcast to inspect it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LbError {
    /// No endpoint is in rotation (none configured, or all unhealthy).
    /// A gateway answers 503.
    #[error("no available endpoint")]
    NoAvailableEndpoint,
    /// The picked endpoint's service failed.
    #[error("upstream {endpoint} failed: {source}")]
    Upstream {
        /// URL of the endpoint that failed.
        endpoint: Arc<str>,
        /// Identity of that endpoint (see [`EndpointHandle::id`](crate::EndpointHandle::id)).
        endpoint_id: u64,
        /// The inner service's error.
        #[source]
        source: BoxError,
    },
    /// The request URI could not be rewritten to the endpoint's authority.
    #[error("cannot route request to {endpoint}: {source}")]
    InvalidUri {
        /// URL of the endpoint.
        endpoint: Arc<str>,
        /// The URI error.
        #[source]
        source: http::Error,
    },
}
