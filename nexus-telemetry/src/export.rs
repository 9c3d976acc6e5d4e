//! The OTLP/HTTP exporter, wrapped so that failures are logged rate-limited.
//!
//! The SDK is built without its `internal-logs` feature, so on its own it
//! would drop export errors silently. [`ReportingExporter`] counts them and
//! logs at most one warning per [`REPORT_EVERY`], carrying the number of
//! failed batches since the previous warning: an unreachable collector costs
//! one log line per interval, never one per span.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::{Error, TelemetryConfig};

/// Minimum interval between two "export failed" warnings.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Builds the OTLP/HTTP protobuf exporter for `url` over hyper 1.
pub(crate) fn otlp(
    cfg: &TelemetryConfig,
    url: String,
) -> Result<ReportingExporter<opentelemetry_otlp::SpanExporter>, Error> {
    let timeout = cfg.batch.export_timeout;
    let client = opentelemetry_http::hyper::HyperClient::with_default_connector(timeout, None);
    let inner = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(timeout)
        .with_http_client(client)
        .build()?;
    Ok(ReportingExporter::new(inner, url))
}

/// Wraps an exporter; see the module docs.
#[derive(Debug)]
pub(crate) struct ReportingExporter<E> {
    inner: E,
    url: String,
    state: Arc<ReportState>,
}

#[derive(Debug)]
struct ReportState {
    started: Instant,
    /// Milliseconds since `started` of the last warning, `u64::MAX` = never.
    last_report_ms: AtomicU64,
    failed_since_report: AtomicU64,
}

impl<E> ReportingExporter<E> {
    pub(crate) fn new(inner: E, url: String) -> Self {
        Self {
            inner,
            url,
            state: Arc::new(ReportState {
                started: Instant::now(),
                last_report_ms: AtomicU64::new(u64::MAX),
                failed_since_report: AtomicU64::new(0),
            }),
        }
    }
}

impl ReportState {
    /// Records a failure; returns the count to report if a warning is due.
    fn failed(&self) -> Option<u64> {
        self.failed_since_report.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_report_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX
            || now.saturating_sub(last) >= u64::try_from(REPORT_EVERY.as_millis()).unwrap_or(0);
        if due
            && self
                .last_report_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.failed_since_report.swap(0, Ordering::Relaxed))
        } else {
            None
        }
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(err) = &result
            && let Some(failed_batches) = self.state.failed()
        {
            // Events emitted here are outside any span, so the OpenTelemetry
            // layer ignores them: no feedback loop.
            tracing::warn!(
                target: "nexus_telemetry::export",
                endpoint = %self.url,
                failed_batches,
                last_batch_spans = spans,
                error = %err,
                "OTLP export failing; spans are being dropped (next report in {}s at most)",
                REPORT_EVERY.as_secs()
            );
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_first_failure_then_rate_limits() {
        let s = ReportState {
            started: Instant::now(),
            last_report_ms: AtomicU64::new(u64::MAX),
            failed_since_report: AtomicU64::new(0),
        };
        assert_eq!(s.failed(), Some(1));
        for _ in 0..100 {
            assert_eq!(s.failed(), None);
        }
        // The last report was long ago: the next failure reports the backlog.
        let backdated = ReportState {
            started: Instant::now() - REPORT_EVERY - Duration::from_millis(5),
            last_report_ms: AtomicU64::new(0),
            failed_since_report: AtomicU64::new(100),
        };
        assert_eq!(backdated.failed(), Some(101));
    }
}
