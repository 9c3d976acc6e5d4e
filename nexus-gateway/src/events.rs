//! Lifecycle event hooks: rate-limit hit, circuit opened, request completed.
//!
//! The gateway calls an [`EventSink`] at each lifecycle point. Implementations must
//! return at once and never fail the request (queue and drop, like
//! `nexus_events::Emitter::emit`). [`LogSink`] writes them as `tracing` events.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

impl GatewayEvent {
    /// The event with its path cut to
    /// [`MAX_RECORDED_PATH`](crate::telemetry::MAX_RECORDED_PATH) bytes.
    fn bounded(mut self) -> Self {
        match &mut self {
            Self::RateLimitHit { url, .. }
            | Self::CircuitOpened { url, .. }
            | Self::RequestCompleted { url, .. } => crate::telemetry::bound_path(url),
        }
        self
    }
}

/// Writes events as `tracing` events: request completed at debug, circuit
/// opened at warn, rate-limit hits at info at most once per second per process
/// (with the number of hits since the last such line; the others at debug;
/// every hit is counted in `nexus_rate_limit_hits_total`). Paths are cut to
/// [`MAX_RECORDED_PATH`](crate::telemetry::MAX_RECORDED_PATH) bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

/// Second (of the process's monotonic clock) of the last info-level
/// rate-limit line, and hits since then.
static RATE_LIMIT_LOG: (AtomicU64, AtomicU64) = (AtomicU64::new(u64::MAX), AtomicU64::new(0));

/// Whether this rate-limit hit gets the info line of the current second;
/// `Some(n)`: yes, with `n` hits since the previous one.
fn rate_limit_info_due() -> Option<u64> {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let now = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    let (last, hits) = &RATE_LIMIT_LOG;
    let seen = hits.fetch_add(1, Ordering::Relaxed) + 1;
    let prev = last.load(Ordering::Relaxed);
    if prev == now
        || last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    hits.fetch_sub(seen, Ordering::Relaxed);
    Some(seen)
}

impl EventSink for LogSink {
    fn emit(&self, event: GatewayEvent) {
        let event = event.bounded();
        match event {
            GatewayEvent::RequestCompleted { .. } => {
                tracing::debug!(?event, "gateway.request.completed")
            }
            GatewayEvent::RateLimitHit { .. } => match rate_limit_info_due() {
                Some(hits) => tracing::info!(?event, hits, "gateway.rate_limit.hit"),
                None => tracing::debug!(?event, "gateway.rate_limit.hit"),
            },
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
        let event = match event.bounded() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{MAX_RECORDED_PATH, TRUNCATED_MARK};

    #[test]
    fn event_paths_are_cut() {
        let e = GatewayEvent::RateLimitHit {
            ip: None,
            method: "GET".to_owned(),
            url: format!("/{}", "x".repeat(60_000)),
            correlation_id: String::new(),
        }
        .bounded();
        let GatewayEvent::RateLimitHit { url, .. } = e else {
            panic!("variant changed");
        };
        assert_eq!(url.len(), MAX_RECORDED_PATH + TRUNCATED_MARK.len());
        assert!(url.ends_with(TRUNCATED_MARK));
    }

    #[test]
    fn rate_limit_info_lines_are_at_most_one_per_second() {
        let due = (0..1000)
            .filter(|_| rate_limit_info_due().is_some())
            .count();
        // 1000 calls take far less than a few seconds.
        assert!((1..=3).contains(&due), "{due} info lines");
    }
}
