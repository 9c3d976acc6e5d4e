//! Error types of the proxy.

use std::io;

/// Invalid configuration; names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or duration that must be positive was zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// The upstream URL could not be used.
    #[error("invalid upstream URL `{url}`: {reason}")]
    InvalidUpstream {
        /// The URL, with any password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another field is invalid.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why [`Proxy::serve`](crate::Proxy::serve) or [`Proxy::bind`](crate::Proxy::bind) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Could not bind the listen address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
    /// The policy file could not be loaded when serving started.
    #[error("cannot load the cache policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    /// [`ProxyConfig::admin`](crate::ProxyConfig::admin) is set (bypassing
    /// the builder's check) but the crate was built without its `admin`
    /// feature: nothing would serve the address.
    #[error(
        "an admin address ({0}) is configured but nexus-cache was built without its `admin` feature"
    )]
    AdminUnavailable(std::net::SocketAddr),
}

/// Why an upstream request failed. Every variant becomes one `-ERR ...` reply per
/// affected command, so a client always gets exactly one reply per command.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The connection carrying the request died before its reply arrived.
    #[error("upstream connection lost")]
    ConnectionLost,
    /// Redis could not be reached (connect, authentication or handshake failed).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// Redis sent bytes that are not valid RESP; the connection was dropped.
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    /// Redis did not answer within `upstream_timeout`; the connection was dropped.
    #[error("upstream timeout")]
    Timeout,
    /// The proxy is shutting down.
    #[error("proxy shutting down")]
    ShuttingDown,
}

impl UpstreamError {
    /// The RESP error line (`-ERR ...\r\n`) sent to clients for this failure.
    pub fn to_resp(&self) -> bytes::Bytes {
        bytes::Bytes::from(format!("-ERR {}\r\n", single_line(&self.to_string())))
    }
}

/// Replaces CR and LF so a message can be embedded in a RESP simple error.
pub(crate) fn single_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// A client command longer than
/// [`ProxyConfig::max_command_len`](crate::ProxyConfig::max_command_len):
/// refused like malformed input (`-ERR Protocol error: ...`, then the
/// connection closes).
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("command longer than the limit of {max} bytes (max_command_len)")]
pub(crate) struct CommandTooLong {
    /// The configured limit.
    pub(crate) max: usize,
}
