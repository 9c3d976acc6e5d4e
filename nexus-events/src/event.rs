//! The event contract shared by the gateway (producer) and the consumer.
//!
//! Wire format: one JSON object per Kafka record, flat, camelCase, with a
//! schema version `v`, a `type` equal to the topic name, `emittedAt` (RFC 3339,
//! milliseconds, UTC) and an optional `correlationId` (the request id):
//!
//! ```json
//! {"v":1,"type":"gateway.rate_limit.hit","emittedAt":"2026-11-29T15:50:06.123Z",
//!  "correlationId":"7f3c","ip":"10.0.0.7","method":"GET","url":"/api/products"}
//! ```
//!
//! Readers tolerate unknown fields (old consumers survive new producers) and
//! accept any `v` up to [`SCHEMA_VERSION`]; a newer major version is refused
//! with a typed error rather than misread.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::TraceContext;

/// The schema version this crate writes, and the highest one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Topic of [`RateLimitHit`] events.
pub const TOPIC_RATE_LIMIT_HIT: &str = "gateway.rate_limit.hit";
/// Topic of [`CircuitOpened`] events.
pub const TOPIC_CIRCUIT_OPENED: &str = "gateway.circuit.opened";
/// Topic of [`RequestCompleted`] events.
pub const TOPIC_REQUEST_COMPLETED: &str = "gateway.request.completed";
/// Every topic this crate writes, in a stable order.
pub const ALL_TOPICS: [&str; 3] = [
    TOPIC_RATE_LIMIT_HIT,
    TOPIC_CIRCUIT_OPENED,
    TOPIC_REQUEST_COMPLETED,
];

/// A client IP exceeded its token bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitHit {
    /// Client IP as the gateway saw it.
    pub ip: String,
    /// HTTP method of the refused request.
    pub method: String,
    /// Request URL (path and query) of the refused request.
    pub url: String,
}

/// A circuit breaker tripped open for an upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitOpened {
    /// The upstream whose circuit opened (e.g. `http://127.0.0.1:3002`).
    pub upstream: String,
    /// HTTP method of the request that tripped it.
    pub method: String,
    /// Request URL of the request that tripped it.
    pub url: String,
}

/// A proxied request finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestCompleted {
    /// HTTP method.
    pub method: String,
    /// Request URL (path and query).
    pub url: String,
    /// Final HTTP status code.
    pub status_code: u16,
    /// Measured latency in milliseconds (fractional).
    pub latency_ms: f64,
    /// Authenticated client id, or `anonymous`.
    pub client_id: String,
}

/// The payload of an event; the variant decides the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// `gateway.rate_limit.hit`
    #[serde(rename = "gateway.rate_limit.hit")]
    RateLimitHit(RateLimitHit),
    /// `gateway.circuit.opened`
    #[serde(rename = "gateway.circuit.opened")]
    CircuitOpened(CircuitOpened),
    /// `gateway.request.completed`
    #[serde(rename = "gateway.request.completed")]
    RequestCompleted(RequestCompleted),
}

impl EventKind {
    /// The Kafka topic this kind of event is written to.
    pub fn topic(&self) -> &'static str {
        match self {
            Self::RateLimitHit(_) => TOPIC_RATE_LIMIT_HIT,
            Self::CircuitOpened(_) => TOPIC_CIRCUIT_OPENED,
            Self::RequestCompleted(_) => TOPIC_REQUEST_COMPLETED,
        }
    }
}

/// One event: envelope fields plus its payload.
///
/// Equality compares what travels in the JSON (`v`, `emitted_at`,
/// `correlation_id`, `kind`) and ignores [`trace`](Self::trace): the trace
/// context is transport metadata (Kafka record headers), captured at emit
/// time and absent from [`Event::from_json`], so an emitted event equals the
/// same event read back from Kafka.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Schema version (see [`SCHEMA_VERSION`]).
    pub v: u32,
    /// When the gateway emitted it.
    #[serde(with = "crate::time::rfc3339")]
    pub emitted_at: SystemTime,
    /// The request id, also used as the Kafka record key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The payload, flattened into the same JSON object.
    #[serde(flatten)]
    pub kind: EventKind,
    /// Trace context of the span that emitted it, captured by
    /// [`Emitter::emit`](crate::Emitter::emit) when unset. Not part of the
    /// JSON: it travels in the Kafka record headers (`traceparent`).
    #[serde(skip)]
    pub trace: Option<TraceContext>,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        // Destructured so that a new field has to be placed on one side or
        // the other of this comparison.
        let Self {
            v,
            emitted_at,
            correlation_id,
            kind,
            trace: _,
        } = self;
        *v == other.v
            && *emitted_at == other.emitted_at
            && *correlation_id == other.correlation_id
            && *kind == other.kind
    }
}

/// Why a record could not be read as an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, a missing field, a wrong type, or an unknown `type`.
    #[error("malformed event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Written by a newer, incompatible producer.
    #[error("event schema version {found} is newer than the supported {SCHEMA_VERSION}")]
    UnsupportedVersion {
        /// The `v` found in the record.
        found: u32,
    },
    /// The `type` field does not match the topic the record was read from.
    #[error("event of type {found} read from topic {topic}")]
    TopicMismatch {
        /// Topic the record came from.
        topic: String,
        /// Topic named by the event's `type`.
        found: &'static str,
    },
}

impl Event {
    /// A new event stamped with the current wall-clock time.
    pub fn new(kind: EventKind, correlation_id: Option<String>) -> Self {
        Self {
            v: SCHEMA_VERSION,
            emitted_at: SystemTime::now(),
            correlation_id,
            kind,
            trace: None,
        }
    }

    /// Shorthand for a [`RateLimitHit`] event.
    pub fn rate_limit_hit(
        ip: impl Into<String>,
        method: impl Into<String>,
        url: impl Into<String>,
        correlation_id: Option<String>,
    ) -> Self {
        let kind = EventKind::RateLimitHit(RateLimitHit {
            ip: ip.into(),
            method: method.into(),
            url: url.into(),
        });
        Self::new(kind, correlation_id)
    }

    /// Shorthand for a [`CircuitOpened`] event.
    pub fn circuit_opened(
        upstream: impl Into<String>,
        method: impl Into<String>,
        url: impl Into<String>,
        correlation_id: Option<String>,
    ) -> Self {
        let kind = EventKind::CircuitOpened(CircuitOpened {
            upstream: upstream.into(),
            method: method.into(),
            url: url.into(),
        });
        Self::new(kind, correlation_id)
    }

    /// Shorthand for a [`RequestCompleted`] event.
    pub fn request_completed(completed: RequestCompleted, correlation_id: Option<String>) -> Self {
        Self::new(EventKind::RequestCompleted(completed), correlation_id)
    }

    /// The Kafka topic of this event.
    pub fn topic(&self) -> &'static str {
        self.kind.topic()
    }

    /// Serializes to the JSON wire format, appending to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Serializing plain structs of strings and numbers into a Vec cannot fail.
        if let Err(e) = serde_json::to_writer(&mut *out, self) {
            tracing::error!(error = %e, "event serialization failed");
        }
    }

    /// Serializes to the JSON wire format.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        self.encode_into(&mut out);
        out
    }

    /// Parses the JSON wire format, tolerating unknown fields.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let Version { v } = serde_json::from_slice(bytes)?;
        if v > SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: v });
        }
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Parses a record read from `topic`, checking that its type matches.
    pub fn from_record(topic: &str, bytes: &[u8]) -> Result<Self, DecodeError> {
        let event = Self::from_json(bytes)?;
        if event.topic() != topic {
            return Err(DecodeError::TopicMismatch {
                topic: topic.to_owned(),
                found: event.topic(),
            });
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn wire_format_is_flat_camel_case_and_versioned() {
        let mut e = Event::request_completed(
            RequestCompleted {
                method: "GET".into(),
                url: "/api/hello".into(),
                status_code: 200,
                latency_ms: 4.23,
                client_id: "gateway-client".into(),
            },
            Some("req-1".into()),
        );
        e.emitted_at = at(1_700_000_000_123);
        let json: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "v": 1,
                "type": "gateway.request.completed",
                "emittedAt": "2023-11-14T22:13:20.123Z",
                "correlationId": "req-1",
                "method": "GET",
                "url": "/api/hello",
                "statusCode": 200,
                "latencyMs": 4.23,
                "clientId": "gateway-client"
            })
        );
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }

    #[test]
    fn equality_ignores_the_trace_context_but_not_the_payload() {
        let mut emitted = Event::rate_limit_hit("10.0.0.1", "GET", "/x", Some("req-1".into()));
        emitted.emitted_at = at(1_700_000_000_123);
        emitted.trace = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        );
        #[cfg(feature = "trace-context")]
        assert!(emitted.trace.is_some());
        // What a consumer decodes: the same JSON, no trace (it is in the headers).
        let decoded = Event::from_record(TOPIC_RATE_LIMIT_HIT, &emitted.to_json()).unwrap();
        assert!(decoded.trace.is_none());
        assert_eq!(decoded, emitted);
        assert_eq!(emitted, decoded);

        let mut other = decoded.clone();
        other.correlation_id = Some("req-2".into());
        assert_ne!(other, emitted);
        let mut other = decoded.clone();
        other.emitted_at = at(1_700_000_000_124);
        assert_ne!(other, emitted);
        let other = Event {
            emitted_at: emitted.emitted_at,
            ..Event::rate_limit_hit("10.0.0.2", "GET", "/x", Some("req-1".into()))
        };
        assert_ne!(other, emitted);
    }

    #[test]
    fn unknown_fields_are_tolerated_and_missing_correlation_is_none() {
        let raw =
            br#"{"v":1,"type":"gateway.rate_limit.hit","emittedAt":"2026-01-02T03:04:05.006Z",
            "ip":"10.0.0.1","method":"GET","url":"/x","region":"eu","extra":{"a":1}}"#;
        let e = Event::from_record(TOPIC_RATE_LIMIT_HIT, raw).unwrap();
        assert_eq!(e.correlation_id, None);
        assert_eq!(
            e.kind,
            EventKind::RateLimitHit(RateLimitHit {
                ip: "10.0.0.1".into(),
                method: "GET".into(),
                url: "/x".into()
            })
        );
    }

    #[test]
    fn newer_versions_wrong_topics_and_garbage_are_typed_errors() {
        let newer = br#"{"v":2,"type":"gateway.circuit.opened","emittedAt":"2026-01-02T03:04:05Z","upstream":"u","method":"GET","url":"/"}"#;
        assert!(matches!(
            Event::from_json(newer),
            Err(DecodeError::UnsupportedVersion { found: 2 })
        ));
        let e = Event::circuit_opened("http://u", "GET", "/", None);
        assert!(matches!(
            Event::from_record(TOPIC_RATE_LIMIT_HIT, &e.to_json()),
            Err(DecodeError::TopicMismatch { .. })
        ));
        for bad in [
            &b""[..],
            b"{",
            b"[]",
            b"{\"v\":1}",
            b"{\"v\":1,\"type\":\"nope\"}",
        ] {
            assert!(matches!(
                Event::from_json(bad),
                Err(DecodeError::Malformed(_))
            ));
        }
    }
}
