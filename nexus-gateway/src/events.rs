//! Lifecycle event hooks: rate-limit hit, circuit opened, request completed.
//!
//! The gateway calls an [`EventSink`] at each lifecycle point. Implementations must
//! return at once and never fail the request (queue and drop, like
//! `nexus_events::Emitter::emit`). [`LogSink`] writes them as `tracing` events.

use std::net::IpAddr;
use std::sync::Arc;

/// A gateway lifecycle event.
#[derive(Debug, Clone)]
pub enum GatewayEvent {
    /// `gateway.rate_limit.hit`.
    RateLimitHit {
        /// Peer IP.
        ip: Option<IpAddr>,
        /// Method.
        method: String,
        /// Normalised path.
        url: String,
        /// Request id.
        correlation_id: String,
    },
    /// `gateway.circuit.opened`.
    CircuitOpened {
        /// Upstream base URL.
        upstream: Arc<str>,
        /// Method of the request that tripped it.
        method: String,
        /// Path of the request that tripped it.
        url: String,
        /// Request id.
        correlation_id: String,
    },
    /// `gateway.request.completed`.
    RequestCompleted {
        /// Method.
        method: String,
        /// Normalised path.
        url: String,
        /// Status code.
        status_code: u16,
        /// Latency, milliseconds.
        latency_ms: f64,
        /// Client id or `anonymous`.
        client_id: Arc<str>,
        /// Request id.
        correlation_id: String,
    },
}

/// Where lifecycle events go. `emit` must not block.
pub trait EventSink: Send + Sync + 'static {
    /// Hands an event over; never blocks, never fails the caller.
    fn emit(&self, event: GatewayEvent);

    /// Whether `request.completed` events would be kept (default: yes). The
    /// entry layer skips building one (four allocations) when this is false.
    fn wants_completed(&self) -> bool {
        true
    }

    /// Delivery counters for the dashboard (default: none, for sinks without
    /// a queue).
    fn stats(&self) -> Option<SinkStats> {
        None
    }

    /// What kind of sink this is, shown on the dashboard.
    fn kind(&self) -> &'static str {
        "custom"
    }
}

/// Delivery counters of a queued [`EventSink`], all monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Events accepted into the queue.
    pub emitted: u64,
    /// Events acknowledged by the destination.
    pub sent: u64,
    /// Events dropped before entering the queue (queue full or closed).
    pub dropped: u64,
    /// Events dequeued but not delivered.
    pub failed: u64,
}

/// Writes events as `tracing` events at debug (request completed) or info level.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    fn emit(&self, event: GatewayEvent) {
        match event {
            GatewayEvent::RequestCompleted { .. } => {
                tracing::debug!(?event, "gateway.request.completed")
            }
            GatewayEvent::RateLimitHit { .. } => tracing::info!(?event, "gateway.rate_limit.hit"),
            GatewayEvent::CircuitOpened { .. } => tracing::warn!(?event, "gateway.circuit.opened"),
        }
    }

    fn wants_completed(&self) -> bool {
        tracing::enabled!(tracing::Level::DEBUG)
    }

    fn kind(&self) -> &'static str {
        "log"
    }
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: GatewayEvent) {}

    fn kind(&self) -> &'static str {
        "null"
    }
}

/// Events go to Kafka (or any `nexus_events` sink) through the non-blocking
/// `nexus_events::Emitter`: a `try_send` into its bounded queue; a full queue
/// drops and counts.
impl EventSink for nexus_events::Emitter {
    fn emit(&self, event: GatewayEvent) {
        let event = match event {
            GatewayEvent::RateLimitHit {
                ip,
                method,
                url,
                correlation_id,
            } => nexus_events::Event::rate_limit_hit(
                ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                method,
                url,
                Some(correlation_id),
            ),
            GatewayEvent::CircuitOpened {
                upstream,
                method,
                url,
                correlation_id,
            } => nexus_events::Event::circuit_opened(
                upstream.to_string(),
                method,
                url,
                Some(correlation_id),
            ),
            GatewayEvent::RequestCompleted {
                method,
                url,
                status_code,
                latency_ms,
                client_id,
                correlation_id,
            } => nexus_events::Event::request_completed(
                nexus_events::RequestCompleted {
                    method,
                    url,
                    status_code,
                    latency_ms,
                    client_id: client_id.to_string(),
                },
                Some(correlation_id),
            ),
        };
        nexus_events::Emitter::emit(self, event);
    }

    fn stats(&self) -> Option<SinkStats> {
        let s = nexus_events::Emitter::stats(self);
        Some(SinkStats {
            emitted: s.emitted,
            sent: s.sent,
            dropped: s.dropped_full + s.dropped_closed,
            failed: s.failed,
        })
    }

    fn kind(&self) -> &'static str {
        "emitter"
    }
}
