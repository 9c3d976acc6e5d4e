//! Versioned gateway events, a non-blocking emitter, and a Kafka producer and
//! group consumer.
//!
//! * [`Event`] is the JSON contract shared by the gateway and the consumer
//!   (schema version `v`, camelCase fields, `emittedAt`, `correlationId`).
//! * [`Emitter`] is the request-path handle: `emit` is a `try_send` into a
//!   bounded queue; a background task batches events into an [`EventSink`]
//!   ([`KafkaSink`], [`MemorySink`], [`LogSink`]). A full queue or a down
//!   broker drops and counts, never blocks.
//! * [`kafka`] holds a small Kafka client on the `kafka-protocol` crate: a
//!   batching producer with Java-compatible murmur2 partitioning and a group
//!   consumer with at-least-once commits.
//! * [`CompletedLayer`] is a tower layer emitting `gateway.request.completed`.
//! * [`TraceContext`]: `emit` captures the current span's W3C trace context
//!   (feature `trace-context`, on by default) and [`KafkaSink`] sends it as
//!   `traceparent`/`tracestate` record headers, so the consumer's span joins
//!   the producing request's trace. The JSON payload is unchanged.
//!
//! ```
//! use nexus_events::{Emitter, Event};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (emitter, task, sink) = Emitter::in_memory(1_000).unwrap();
//! emitter.emit(Event::rate_limit_hit("10.0.0.7", "GET", "/api/products", Some("req-1".into())));
//! assert_eq!(sink.wait_for(1, std::time::Duration::from_secs(1)).await, 1);
//! let stats = task.shutdown(std::time::Duration::from_secs(1)).await;
//! assert_eq!((stats.emitted, stats.sent), (1, 1));
//! # }
//! ```

mod emitter;
mod event;
pub mod kafka;
mod layer;
mod time;
mod trace;

pub use emitter::{
    DeliveryReport, Emitter, EmitterConfig, EmitterConfigError, EmitterStats, EmitterStatsHandle,
    EmitterTask, EventSink, LogSink, MemorySink,
};
pub use event::{
    ALL_TOPICS, CircuitOpened, DecodeError, Event, EventKind, RateLimitHit, RequestCompleted,
    SCHEMA_VERSION, TOPIC_CIRCUIT_OPENED, TOPIC_RATE_LIMIT_HIT, TOPIC_REQUEST_COMPLETED,
};
pub use kafka::KafkaSink;
pub use layer::{ClientId, CompletedFuture, CompletedLayer, CompletedService};
pub use trace::TraceContext;
