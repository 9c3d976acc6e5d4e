//! [`EventSink`] over the Kafka [`Producer`].

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use tokio::time::Instant;

use super::config::ProducerConfig;
use super::error::KafkaError;
use super::producer::{OutRecord, Producer};
use crate::{DeliveryReport, Event, EventSink, TraceContext};

/// Delivers events to Kafka: topic per event type, keyed by correlation id
/// (key-less events are spread round-robin), JSON values, and the emitting
/// span's W3C `traceparent`/`tracestate` as record headers when the event
/// carries a [`TraceContext`].
#[derive(Debug)]
pub struct KafkaSink {
    producer: Producer,
    /// Records reused between batches (bounded by the emitter's `max_batch`).
    scratch: Vec<OutRecord>,
    last_error_log: Option<Instant>,
}

impl KafkaSink {
    /// Validates `config`; connects lazily on the first batch, so a gateway
    /// starts even while the broker is down.
    pub fn new(config: ProducerConfig) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: Producer::new(config)?,
            scratch: Vec::new(),
            last_error_log: None,
        })
    }

    /// Converts an event into a record (public for tools and benches).
    pub fn record(event: &Event) -> OutRecord {
        let timestamp_ms = event
            .emitted_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        OutRecord {
            topic: event.topic().into(),
            key: event
                .correlation_id
                .as_ref()
                .map(|c| Bytes::copy_from_slice(c.as_bytes())),
            value: Bytes::from(event.to_json()),
            timestamp_ms,
            headers: event
                .trace
                .as_ref()
                .map(TraceContext::record_headers)
                .unwrap_or_default(),
        }
    }
}

impl EventSink for KafkaSink {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        self.scratch.clear();
        self.scratch.extend(batch.iter().map(Self::record));
        let report = self.producer.send(&self.scratch).await;
        self.scratch.clear();
        if let Some(e) = &report.last_error {
            let now = Instant::now();
            if self
                .last_error_log
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
            {
                tracing::warn!(error = %e, sent = report.sent, failed = report.failed, "kafka delivery problem");
                self.last_error_log = Some(now);
            }
        }
        DeliveryReport {
            sent: report.sent,
            failed: report.failed,
        }
    }
}
