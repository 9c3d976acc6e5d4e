//! Typed, validated telemetry configuration.

use std::borrow::Cow;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::Error;

/// The seed's OTLP/HTTP collector address (Jaeger all-in-one listens there).
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://localhost:4318";

/// How log lines are written to standard error (or the configured writer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, one line per event, for a terminal. The default.
    #[default]
    Human,
    /// One JSON object per line, with `trace_id` and `span_id` when the event
    /// is emitted inside a span that belongs to a trace.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = Error;

    /// Parses `human`/`text`/`pretty` or `json`, as a `--log-format` flag would.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "human" | "text" | "pretty" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(Error::InvalidConfig {
                field: "log_format",
                reason: format!("unknown format {other:?} (expected `human` or `json`)"),
            }),
        }
    }
}

/// Batch span processor settings. Defaults are the seed's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Spans buffered before new ones are dropped (and counted). Seed: 2048.
    pub max_queue_size: NonZeroUsize,
    /// Delay between two scheduled exports. Seed: 500 ms.
    pub scheduled_delay: Duration,
    /// Spans per export request. Seed: 512. Must not exceed `max_queue_size`.
    pub max_export_batch_size: NonZeroUsize,
    /// Deadline for one export HTTP request (connect + send + response).
    pub export_timeout: Duration,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_queue_size: NonZeroUsize::new(2048).unwrap_or(NonZeroUsize::MIN),
            scheduled_delay: Duration::from_millis(500),
            max_export_batch_size: NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN),
            export_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything [`init`](crate::init) needs. Libraries never read the environment:
/// binaries fill this from their flags and `RUST_LOG` once at start.
///
/// ```
/// use nexus_telemetry::{LogFormat, TelemetryConfig};
/// let cfg = TelemetryConfig::new("nexus-gateway")
///     .log_format(LogFormat::Json)
///     .filter("info,nexus_gateway=debug")
///     .otlp_endpoint(Some("http://127.0.0.1:4318".into()))
///     .sampling_ratio(0.25);
/// assert_eq!(cfg.service_name(), "nexus-gateway");
/// ```
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub(crate) service_name: Cow<'static, str>,
    pub(crate) log_format: LogFormat,
    pub(crate) ansi: bool,
    pub(crate) filter: String,
    pub(crate) trace_filter: String,
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) sampling_ratio: f64,
    pub(crate) batch: BatchSettings,
}

impl TelemetryConfig {
    /// Human logs at `info`, no exporter, every trace sampled.
    pub fn new(service_name: impl Into<Cow<'static, str>>) -> Self {
        Self {
            service_name: service_name.into(),
            log_format: LogFormat::Human,
            ansi: false,
            filter: "info".to_owned(),
            trace_filter: "info".to_owned(),
            otlp_endpoint: None,
            sampling_ratio: 1.0,
            batch: BatchSettings::default(),
        }
    }

    /// The `service.name` resource attribute of exported spans.
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Sets the log format.
    pub fn log_format(mut self, format: LogFormat) -> Self {
        self.log_format = format;
        self
    }

    /// Colours in [`LogFormat::Human`] output (off by default). Binaries pass
    /// `std::io::IsTerminal::is_terminal(&std::io::stderr())`.
    pub fn ansi(mut self, on: bool) -> Self {
        self.ansi = on;
        self
    }

    /// Sets the `RUST_LOG`-style filter directive, e.g. `info,nexus_cache=debug`.
    pub fn filter(mut self, directive: impl Into<String>) -> Self {
        self.filter = directive.into();
        self
    }

    /// Sets which spans are traced (exported and propagated), independently
    /// of the log filter, in `tracing_subscriber::filter::Targets` syntax
    /// (`info`, `info,nexus_cache=debug`). Default `info`: the request spans
    /// of this crate are `INFO`, so a quiet log filter such as `warn` still
    /// traces and still correlates warnings with their request.
    pub fn trace_filter(mut self, directive: impl Into<String>) -> Self {
        self.trace_filter = directive.into();
        self
    }

    /// Sets the OTLP/HTTP base endpoint (`/v1/traces` is appended). `None`
    /// disables export: spans still get ids (for log correlation and
    /// `traceparent` propagation) but nothing leaves the process.
    pub fn otlp_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.otlp_endpoint = endpoint;
        self
    }

    /// Fraction of new traces sampled, in `[0, 1]`. Parent-based: an incoming
    /// `traceparent` keeps its own sampled flag.
    pub fn sampling_ratio(mut self, ratio: f64) -> Self {
        self.sampling_ratio = ratio;
        self
    }

    /// Replaces the batch processor settings.
    pub fn batch(mut self, batch: BatchSettings) -> Self {
        self.batch = batch;
        self
    }

    /// Checks every field; [`init`](crate::init) calls it first.
    pub fn validate(&self) -> Result<(), Error> {
        if self.service_name.trim().is_empty() {
            return Err(invalid("service_name", "must not be empty"));
        }
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(invalid(
                "sampling_ratio",
                format!("{} is outside [0, 1]", self.sampling_ratio),
            ));
        }
        if let Some(ep) = &self.otlp_endpoint {
            let uri: http::Uri = ep
                .parse()
                .map_err(|e| invalid("otlp_endpoint", format!("{ep:?}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(invalid(
                    "otlp_endpoint",
                    format!("{ep:?}: expected http://host:port (TLS is not built in)"),
                ));
            }
        }
        let b = &self.batch;
        if b.max_export_batch_size > b.max_queue_size {
            return Err(invalid(
                "batch.max_export_batch_size",
                "must not exceed batch.max_queue_size",
            ));
        }
        if b.scheduled_delay.is_zero() || b.export_timeout.is_zero() {
            return Err(invalid(
                "batch.scheduled_delay/export_timeout",
                "must be non-zero",
            ));
        }
        Ok(())
    }

    /// `<endpoint>/v1/traces`, if export is on.
    pub(crate) fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|ep| format!("{}/v1/traces", ep.trim_end_matches('/')))
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_fields() {
        let bad_ratio = TelemetryConfig::new("s").sampling_ratio(1.5).validate();
        assert!(matches!(
            bad_ratio,
            Err(Error::InvalidConfig {
                field: "sampling_ratio",
                ..
            })
        ));
        let tls = TelemetryConfig::new("s")
            .otlp_endpoint(Some("https://x:4318".into()))
            .validate();
        assert!(matches!(
            tls,
            Err(Error::InvalidConfig {
                field: "otlp_endpoint",
                ..
            })
        ));
        assert!(TelemetryConfig::new(" ").validate().is_err());
        assert!("yaml".parse::<LogFormat>().is_err());
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
    }

    #[test]
    fn traces_url_appends_path() {
        let c = TelemetryConfig::new("s").otlp_endpoint(Some("http://h:4318/".into()));
        assert!(c.validate().is_ok());
        assert_eq!(c.traces_url().as_deref(), Some("http://h:4318/v1/traces"));
    }
}
