//! Trace context carried from the emitting request to the consumer.
//!
//! [`Emitter::emit`](crate::Emitter::emit) captures the context of the
//! current `tracing` span (the gateway's request span) at the moment of the
//! call, because the background sender runs in another task where that span
//! is no longer current. [`KafkaSink`](crate::KafkaSink) writes it as the W3C
//! `traceparent` (and `tracestate`) record headers; the consumer reads them
//! back with [`TraceContext::from_record_headers`] and parents its span on it.
//! It is never part of the event's JSON, which stays the seed's contract.
//!
//! Without the `trace-context` feature (on by default) nothing is captured
//! and every constructor returns `None`.

use bytes::Bytes;

/// The trace context of the span that emitted an event.
///
/// Cheap to clone (reference counted). Two contexts are equal when they name
/// the same span of the same trace.
#[derive(Clone, Debug)]
pub struct TraceContext {
    #[cfg(feature = "trace-context")]
    cx: nexus_telemetry::Context,
    #[cfg(not(feature = "trace-context"))]
    never: std::convert::Infallible,
}

#[cfg(feature = "trace-context")]
impl TraceContext {
    /// The context of the current `tracing` span, when it belongs to a trace
    /// (the OpenTelemetry layer of `nexus-telemetry` is installed and a span
    /// is entered). Outside any span: one thread-local read, `None`.
    #[inline]
    pub fn current() -> Option<Self> {
        nexus_telemetry::propagation::current_context().map(|cx| Self { cx })
    }

    /// Reads `traceparent`/`tracestate` from Kafka record headers given as
    /// `(key, value)` pairs; `None` when absent or malformed.
    pub fn from_record_headers<'a, I>(headers: I) -> Option<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let cx = nexus_telemetry::propagation::extract_record_headers(headers);
        nexus_telemetry::propagation::trace_id_hex(&cx).map(|_| Self { cx })
    }

    /// Parses a W3C `traceparent` value (for tools and tests).
    pub fn from_traceparent(traceparent: &str) -> Option<Self> {
        Self::from_record_headers([(
            nexus_telemetry::propagation::TRACEPARENT,
            traceparent.as_bytes(),
        )])
    }

    /// The record headers to produce: `traceparent` and, if non-empty,
    /// `tracestate`.
    pub fn record_headers(&self) -> Vec<(String, Bytes)> {
        nexus_telemetry::propagation::record_headers(&self.cx)
    }

    /// The trace id, 32 lowercase hex digits.
    pub fn trace_id(&self) -> String {
        nexus_telemetry::propagation::trace_id_hex(&self.cx).unwrap_or_default()
    }

    /// The id of the emitting span, 16 lowercase hex digits.
    pub fn span_id(&self) -> String {
        nexus_telemetry::propagation::span_id_hex(&self.cx).unwrap_or_default()
    }

    /// Makes the emitting span the parent of `span`. Call right after
    /// creating `span`, before it is entered (an OpenTelemetry span's parent
    /// is fixed once it starts). Returns whether the parent was set.
    pub fn set_parent_of(&self, span: &tracing::Span) -> bool {
        use nexus_telemetry::OpenTelemetrySpanExt as _;
        span.set_parent(self.cx.clone()).is_ok()
    }
}

#[cfg(not(feature = "trace-context"))]
impl TraceContext {
    /// Always `None` without the `trace-context` feature.
    #[inline]
    pub fn current() -> Option<Self> {
        None
    }

    /// Always `None` without the `trace-context` feature.
    pub fn from_record_headers<'a, I>(_headers: I) -> Option<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        None
    }

    /// Always `None` without the `trace-context` feature.
    pub fn from_traceparent(_traceparent: &str) -> Option<Self> {
        None
    }

    /// Unreachable: no value exists without the feature.
    pub fn record_headers(&self) -> Vec<(String, Bytes)> {
        match self.never {}
    }

    /// Unreachable: no value exists without the feature.
    pub fn trace_id(&self) -> String {
        match self.never {}
    }

    /// Unreachable: no value exists without the feature.
    pub fn span_id(&self) -> String {
        match self.never {}
    }

    /// Unreachable: no value exists without the feature.
    pub fn set_parent_of(&self, _span: &tracing::Span) -> bool {
        match self.never {}
    }
}

/// Same trace id and span id (flags and `tracestate` are not compared).
/// Compares the binary ids in place: no allocation.
#[cfg(feature = "trace-context")]
impl PartialEq for TraceContext {
    fn eq(&self, other: &Self) -> bool {
        use opentelemetry::trace::TraceContextExt as _;
        let (a, b) = (self.cx.span(), other.cx.span());
        let (a, b) = (a.span_context(), b.span_context());
        a.trace_id() == b.trace_id() && a.span_id() == b.span_id()
    }
}

#[cfg(not(feature = "trace-context"))]
impl PartialEq for TraceContext {
    fn eq(&self, _other: &Self) -> bool {
        match self.never {}
    }
}

impl Eq for TraceContext {}

#[cfg(all(test, feature = "trace-context"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn headers_round_trip_and_garbage_is_none() {
        let tc = TraceContext::from_traceparent(TP).unwrap();
        assert_eq!(tc.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.span_id(), "00f067aa0ba902b7");
        let headers = tc.record_headers();
        assert_eq!(
            headers,
            vec![("traceparent".to_owned(), Bytes::from_static(TP.as_bytes()))]
        );
        let back = TraceContext::from_record_headers(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_ref())),
        )
        .unwrap();
        assert_eq!(back, tc);
        // Equality is by ids: another span of the same trace, or another
        // trace with the same span id, is different; flags and tracestate
        // are not part of it.
        let other_span = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b8-01",
        )
        .unwrap();
        let other_trace = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4737-00f067aa0ba902b7-01",
        )
        .unwrap();
        assert_ne!(tc, other_span);
        assert_ne!(tc, other_trace);
        let unsampled = TraceContext::from_traceparent(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        )
        .unwrap();
        assert_eq!(tc, unsampled);
        let with_state = TraceContext::from_record_headers([
            ("traceparent", TP.as_bytes()),
            ("tracestate", &b"vendor=1"[..]),
        ])
        .unwrap();
        assert_eq!(tc, with_state);
        assert!(TraceContext::from_traceparent("00-zz-00f067aa0ba902b7-01").is_none());
        assert!(TraceContext::from_record_headers([("x-other", &b"1"[..])]).is_none());
        // No subscriber, no span: nothing to capture.
        assert!(TraceContext::current().is_none());
    }
}
