//! Routing events to the three handlers and acting on their decisions.

mod latency;
mod rate_limit;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

pub use latency::{Spike, SpikeDetector};
pub use rate_limit::HitCounter;

use nexus_events::kafka::ConsumedRecord;
use nexus_events::{CircuitOpened, Event, EventKind, RateLimitHit, RequestCompleted};
use tokio::time::Instant;
use tracing::Instrument as _;
use tracing::field::Empty;

pub use crate::stats::Stats;

use crate::blocklist::{BlocklistError, BlocklistWriter};
use crate::config::ServiceConfig;
use crate::webhook::Webhook;

/// The three handlers with their state.
#[derive(Debug)]
pub struct Handlers {
    hits: HitCounter,
    block_for: Duration,
    blocklist: BlocklistWriter,
    spikes: SpikeDetector,
    webhook: Option<Webhook>,
    stats: Arc<Stats>,
}

impl Handlers {
    /// Handlers for a validated config.
    pub fn new(config: &ServiceConfig, stats: Arc<Stats>) -> Result<Self, BlocklistError> {
        let b = &config.block;
        Ok(Self {
            hits: HitCounter::new(
                b.threshold,
                Duration::from_millis(b.window_ms),
                b.max_tracked_ips,
            ),
            block_for: Duration::from_millis(b.block_ms),
            blocklist: BlocklistWriter::new(&config.redis_url)?,
            spikes: SpikeDetector::new(config.latency),
            webhook: config
                .alerts
                .webhook_url
                .as_deref()
                .and_then(|u| Webhook::parse(u).ok()),
            stats,
        })
    }

    /// Handles one event. An `Err` means the event must be retried (Redis
    /// down): the caller does not commit it.
    ///
    /// Runs inside a `consumer.handle` span (kind `consumer`) whose parent is
    /// the emitting request's span when `event.trace` is set (in process, the
    /// emitter captured it; from Kafka, see [`Handlers::handle_record`]).
    pub async fn handle(&mut self, event: &Event) -> Result<(), BlocklistError> {
        self.handle_from(event, None).await
    }

    /// [`Handlers::handle`] for an event decoded from `record`: the span gets
    /// the record's topic, partition and offset, and its parent from the
    /// record's `traceparent` header when the event has no trace context.
    pub async fn handle_record(
        &mut self,
        event: &Event,
        record: &ConsumedRecord,
    ) -> Result<(), BlocklistError> {
        self.handle_from(event, Some(record)).await
    }

    async fn handle_from(
        &mut self,
        event: &Event,
        record: Option<&ConsumedRecord>,
    ) -> Result<(), BlocklistError> {
        let span = tracing::info_span!(
            "consumer.handle",
            otel.kind = "consumer",
            otel.status_code = Empty,
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = event.topic(),
            messaging.destination.partition.id = Empty,
            messaging.kafka.offset = Empty,
            event.type = event.topic(),
            correlation_id = event.correlation_id.as_deref().unwrap_or(""),
        );
        // Parent first: an OpenTelemetry span's parent is fixed once it starts.
        if !span.is_disabled() {
            let from_headers;
            let trace = match (&event.trace, record) {
                (Some(t), _) => Some(t),
                (None, Some(r)) => {
                    from_headers =
                        nexus_events::TraceContext::from_record_headers(r.header_pairs());
                    from_headers.as_ref()
                }
                (None, None) => None,
            };
            if let Some(t) = trace {
                t.set_parent_of(&span);
            }
            if let Some(r) = record {
                span.record("messaging.destination.partition.id", r.partition);
                span.record("messaging.kafka.offset", r.offset);
            }
        }
        let started = Instant::now();
        let result = self.dispatch(event).instrument(span.clone()).await;
        match &result {
            Ok(()) => self.stats.record_handled(&event.kind, started.elapsed()),
            Err(_) => {
                Stats::inc(&self.stats.handler_errors);
                span.record("otel.status_code", "error");
            }
        }
        result
    }

    async fn dispatch(&mut self, event: &Event) -> Result<(), BlocklistError> {
        match &event.kind {
            EventKind::RateLimitHit(hit) => self.rate_limit_hit(event, hit).await,
            EventKind::CircuitOpened(c) => {
                self.circuit_opened(event, c);
                Ok(())
            }
            EventKind::RequestCompleted(r) => {
                self.request_completed(event, r);
                Ok(())
            }
        }
    }

    async fn rate_limit_hit(
        &mut self,
        event: &Event,
        hit: &RateLimitHit,
    ) -> Result<(), BlocklistError> {
        Stats::inc(&self.stats.rate_limit_hits);
        let at = event
            .emitted_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        tracing::info!(ip = %hit.ip, method = %hit.method, url = %hit.url, "[rate-limit] hit");
        let Some(hits) = self.hits.record(&hit.ip, at) else {
            return Ok(());
        };
        let expires = self
            .blocklist
            .block(&hit.ip, self.block_for, "rate_limit", hits)
            .await?;
        self.hits.clear(&hit.ip);
        self.stats.record_block(&hit.ip, hits, expires);
        tracing::warn!(ip = %hit.ip, hits, expires_at_ms = expires, "[ACTION] AUTO-BLOCKED IP after {hits} rate limit violations");
        Ok(())
    }

    fn circuit_opened(&mut self, event: &Event, c: &CircuitOpened) {
        Stats::inc(&self.stats.circuit_alerts);
        tracing::warn!(
            upstream = %c.upstream,
            method = %c.method,
            url = %c.url,
            correlation_id = event.correlation_id.as_deref().unwrap_or(""),
            "[ACTION] ALERT - circuit opened for upstream"
        );
        if let Some(w) = &self.webhook {
            let body = serde_json::json!({
                "alert": "circuit_opened",
                "upstream": c.upstream, "method": c.method, "url": c.url,
                "correlationId": event.correlation_id,
            });
            w.post(body.to_string());
        }
    }

    fn request_completed(&mut self, event: &Event, r: &RequestCompleted) {
        Stats::inc(&self.stats.requests_completed);
        tracing::debug!(method = %r.method, url = %r.url, status = r.status_code, latency_ms = r.latency_ms, client = %r.client_id, "[request]");
        if let Some(s) = self.spikes.observe(r.latency_ms) {
            Stats::inc(&self.stats.latency_spikes);
            tracing::warn!(
                method = %r.method,
                url = %r.url,
                latency_ms = s.latency_ms,
                baseline_ms = s.baseline_ms,
                threshold_ms = s.threshold_ms,
                client = %r.client_id,
                correlation_id = event.correlation_id.as_deref().unwrap_or(""),
                "[ACTION] LATENCY SPIKE"
            );
        }
    }

    /// Alert webhook failures so far (0 without a webhook).
    pub fn webhook_failures(&self) -> u64 {
        self.webhook.as_ref().map_or(0, Webhook::failures)
    }
}
