//! Errors of the Kafka client.

use std::time::Duration;

use kafka_protocol::ResponseError;

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// TCP connect failed.
    #[error("connect to broker {addr}: {source}")]
    Connect {
        /// Broker address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Read or write on an established connection failed.
    #[error("i/o with broker {addr}: {source}")]
    Io {
        /// Broker address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A network wait exceeded its timeout.
    #[error("timed out after {after:?} waiting for {what} from {addr}")]
    Timeout {
        /// Broker address.
        addr: String,
        /// What was awaited.
        what: &'static str,
        /// The timeout that expired.
        after: Duration,
    },
    /// The broker sent bytes that do not decode, or a request did not encode.
    #[error("protocol error with {addr}: {message}")]
    Protocol {
        /// Broker address.
        addr: String,
        /// Decoder message.
        message: String,
    },
    /// The broker announced a frame larger than the configured limit.
    #[error("broker {addr} sent a {len}-byte frame, over the {max}-byte limit")]
    FrameTooLarge {
        /// Broker address.
        addr: String,
        /// Announced length.
        len: usize,
        /// Configured limit.
        max: usize,
    },
    /// No version of an API is supported by both sides.
    #[error("broker {addr} supports no usable version of API key {api_key}")]
    UnsupportedApi {
        /// Broker address.
        addr: String,
        /// Kafka API key.
        api_key: i16,
    },
    /// The broker answered with an error code.
    #[error("{context}: broker error {error}")]
    Broker {
        /// Which request or resource.
        context: String,
        /// The Kafka error.
        error: ResponseError,
    },
    /// None of the bootstrap brokers could be reached.
    #[error("no bootstrap broker reachable (last error: {last})")]
    NoBroker {
        /// The last connection error, rendered.
        last: String,
    },
    /// A configuration value was invalid.
    #[error("kafka config: {0}")]
    Config(String),
}

impl KafkaError {
    /// Whether retrying (after a metadata refresh or reconnect) may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::Io { .. }
            | Self::Timeout { .. }
            | Self::NoBroker { .. } => true,
            Self::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// Whether the connection that produced this error must be discarded.
    pub(crate) fn poisons_connection(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::Timeout { .. }
                | Self::Protocol { .. }
                | Self::FrameTooLarge { .. }
        )
    }

    pub(crate) fn broker(context: impl Into<String>, error: ResponseError) -> Self {
        Self::Broker {
            context: context.into(),
            error,
        }
    }
}

/// `Err` if `code` is a Kafka error.
pub(crate) fn check(code: i16, context: impl FnOnce() -> String) -> Result<(), KafkaError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(KafkaError::broker(context(), error)),
    }
}
