//! # nexus-telemetry
//!
//! One place for the observability plumbing shared by the Nexus binaries
//! (gateway, cache proxy, consumer):
//!
//! - [`init`]: installs a `tracing` subscriber with human or JSON-lines logs
//!   (JSON lines carry `trace_id`/`span_id` inside a trace), a `RUST_LOG`-style
//!   filter, and an OpenTelemetry layer exporting spans over OTLP/HTTP protobuf
//!   through a batch processor (seed values: queue 2048, delay 500 ms, batch
//!   512), with parent-based ratio sampling. Export runs in a background task;
//!   an unreachable collector costs the request path nothing but a
//!   `try_send`, and its failures are logged at most once per 30 s.
//! - [`propagation`]: W3C `traceparent`/`tracestate` for `http::HeaderMap`
//!   and for Kafka record headers.
//! - [`layer`]: tower middleware for a `SERVER` span per inbound request and
//!   a `CLIENT` span per upstream attempt.
//!
//! The library reads no environment variable and no file: binaries parse
//! `--otlp-endpoint`, `--log-format` and `RUST_LOG` and fill a
//! [`TelemetryConfig`] (see `docs/observability.md`).
//!
//! ```
//! use nexus_telemetry::{LogFormat, TelemetryConfig};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), nexus_telemetry::Error> {
//! // In a binary: values from flags and RUST_LOG.
//! let cfg = TelemetryConfig::new("nexus-gateway")
//!     .log_format(LogFormat::Json)
//!     .filter("info")
//!     .otlp_endpoint(None); // Some("http://localhost:4318".into()) to export
//! let guard = nexus_telemetry::init(cfg)?;
//!
//! // A second call is an error, not a panic.
//! assert!(nexus_telemetry::init(TelemetryConfig::new("again")).is_err());
//!
//! // Wrap the HTTP stack: SERVER span per request, parented on `traceparent`.
//! let svc = tower::ServiceBuilder::new()
//!     .layer(nexus_telemetry::layer::ServerTraceLayer::new())
//!     .service_fn(|_req: http::Request<()>| async {
//!         tracing::info!("inside the request span: this line has trace_id");
//!         Ok::<_, std::convert::Infallible>(http::Response::new(()))
//!     });
//! # let _ = svc;
//! guard.shutdown().await;
//! # Ok(()) }
//! ```

mod config;
mod error;
mod export;
mod init;
mod json;
pub mod layer;
pub mod propagation;

pub use config::{BatchSettings, DEFAULT_OTLP_ENDPOINT, LogFormat, TelemetryConfig};
pub use error::Error;
pub use init::{TelemetryGuard, build_dispatch, init, init_with_writer};
pub use propagation::{extract_context, inject_context};

/// Re-exported so callers can name contexts without depending on `opentelemetry`.
pub use opentelemetry::Context;
/// Re-exported for `span.context()` / `span.set_parent(cx)` / `span.add_link(..)`.
pub use tracing_opentelemetry::OpenTelemetrySpanExt;
