//! Errors returned by [`init`](crate::init).

/// Why telemetry could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration field holds an invalid value; `field` names it.
    #[error("invalid telemetry config `{field}`: {reason}")]
    InvalidConfig {
        /// The offending field of [`TelemetryConfig`](crate::TelemetryConfig).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The `filter` directive does not parse (`RUST_LOG` syntax).
    #[error("invalid log filter {directive:?}: {source}")]
    Filter {
        /// The directive as given.
        directive: String,
        /// The parser's complaint.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP exporter could not be built (bad endpoint URL and the like).
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// An exporter is configured but `init` was not called inside a tokio runtime;
    /// the batch processor runs as a tokio task.
    #[error("an OTLP endpoint is configured but init() was called outside a tokio runtime")]
    NoRuntime,
    /// A global `tracing` subscriber is already installed (for instance `init`
    /// was called twice in this process).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
}
