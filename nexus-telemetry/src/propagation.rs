//! W3C trace-context (`traceparent`, `tracestate`) propagation helpers.
//!
//! These use the W3C propagator directly rather than the global one, so they
//! behave the same whether or not [`init`](crate::init) ran. Without a
//! tracing subscriber carrying the OpenTelemetry layer, span-based helpers
//! are no-ops (they report `false` / inject nothing).

use bytes::Bytes;
use http::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C header carrying trace id, parent span id and flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header carrying vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// Reads `traceparent`/`tracestate` from `headers`. Missing or malformed
/// headers give a context without a remote span (a new trace will start).
pub fn extract_context(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// Writes `traceparent` (and `tracestate` if non-empty) for the span in `cx`.
/// Writes nothing when `cx` has no valid span.
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut NonEmpty(HeaderInjector(headers)));
}

/// Writes the `traceparent` of `span` (its OpenTelemetry context) into `headers`.
pub fn inject_span(span: &tracing::Span, headers: &mut HeaderMap) {
    inject_context(&span.context(), headers);
}

/// Makes the remote span described by `headers` the parent of `span`.
///
/// Call right after creating the span, before it is entered or logs: once the
/// OpenTelemetry span is started its parent can no longer change. Returns
/// whether a valid remote parent was found and set.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &HeaderMap) -> bool {
    let cx = extract_context(headers);
    cx.span().span_context().is_valid() && span.set_parent(cx).is_ok()
}

/// The OpenTelemetry context of the current `tracing` span, when that span
/// belongs to a trace (sampled or not).
///
/// Meant for capturing trace context where work is queued (an event emitted
/// inside a request) and propagating it later from another task, where the
/// request's span is no longer current. Outside any span it costs one
/// thread-local read and returns `None`; without the OpenTelemetry layer (no
/// [`init`](crate::init)) it returns `None` too.
pub fn current_context() -> Option<Context> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace id of the span in `cx` as 32 lowercase hex digits, or `None`
/// when `cx` has no valid span.
pub fn trace_id_hex(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// The span id of the span in `cx` as 16 lowercase hex digits, or `None`
/// when `cx` has no valid span.
pub fn span_id_hex(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.span_id().to_string())
}

/// Kafka record headers carrying trace context: `traceparent` and, when
/// present, `tracestate`, as `(key, value)` pairs ready for a produce request.
///
/// Empty (and not allocated) when `cx` has no valid span.
pub fn record_headers(cx: &Context) -> Vec<(String, Bytes)> {
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut out = RecordInjector(Vec::with_capacity(2));
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0
}

/// [`record_headers`] for the OpenTelemetry context of `span`.
pub fn record_headers_for_span(span: &tracing::Span) -> Vec<(String, Bytes)> {
    record_headers(&span.context())
}

/// Reads trace context from Kafka record headers, given as `(key, value)` pairs
/// (any header type: map `IndexMap<StrBytes, Option<Bytes>>` entries with
/// `.map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default()))`).
///
/// Only the two W3C keys are kept (case-insensitive); values that are not
/// UTF-8 are ignored, so hostile headers cannot cost more than one scan.
pub fn extract_record_headers<'a, I>(headers: I) -> Context
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut found = RecordExtractor::default();
    for (key, value) in headers {
        let slot = if key.eq_ignore_ascii_case(TRACEPARENT) {
            &mut found.traceparent
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            &mut found.tracestate
        } else {
            continue;
        };
        *slot = std::str::from_utf8(value).ok();
    }
    TraceContextPropagator::new().extract(&found)
}

/// Makes the producing request's span (from Kafka record headers) the parent
/// of `span`. Returns whether a valid parent was found and set. To link
/// rather than parent, use [`extract_record_headers`] and
/// `span.add_link(cx.span().span_context().clone())`.
pub fn set_parent_from_record_headers<'a, I>(span: &tracing::Span, headers: I) -> bool
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let cx = extract_record_headers(headers);
    cx.span().span_context().is_valid() && span.set_parent(cx).is_ok()
}

/// The W3C propagator writes `tracestate` even when empty; skip that.
struct NonEmpty<I>(I);

impl<I: Injector> Injector for NonEmpty<I> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.set(key, value);
        }
    }
}

struct RecordInjector(Vec<(String, Bytes)>);

impl Injector for RecordInjector {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_owned(), Bytes::from(value)));
        }
    }
}

#[derive(Default)]
struct RecordExtractor<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for RecordExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            TRACEPARENT => self.traceparent,
            TRACESTATE => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys = Vec::with_capacity(2);
        if self.traceparent.is_some() {
            keys.push(TRACEPARENT);
        }
        if self.tracestate.is_some() {
            keys.push(TRACESTATE);
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn http_round_trip_keeps_ids() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(TP));
        h.insert(TRACESTATE, HeaderValue::from_static("vendor=x"));
        let cx = extract_context(&h);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = HeaderMap::new();
        inject_context(&cx, &mut out);
        assert_eq!(out.get(TRACEPARENT).unwrap(), TP);
        assert_eq!(out.get(TRACESTATE).unwrap(), "vendor=x");
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-zz-00f067aa0ba902b7-01"),
        );
        assert!(!extract_context(&h).span().span_context().is_valid());
        let mut out = HeaderMap::new();
        inject_context(&extract_context(&h), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn record_headers_round_trip() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(TP));
        let mut plain = HeaderMap::new();
        inject_context(&extract_context(&h), &mut plain);
        assert!(
            plain.get(TRACESTATE).is_none(),
            "no empty tracestate header"
        );
        let recs = record_headers(&extract_context(&h));
        assert_eq!(
            recs,
            vec![("traceparent".to_owned(), Bytes::from_static(TP.as_bytes()))]
        );
        let other = [
            ("x-request-id", &b"abc"[..]),
            ("TraceParent", TP.as_bytes()),
        ];
        let cx = extract_record_headers(other.iter().copied());
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "00f067aa0ba902b7"
        );
        assert_eq!(
            trace_id_hex(&cx).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(span_id_hex(&cx).as_deref(), Some("00f067aa0ba902b7"));
        assert!(record_headers(&Context::new()).is_empty());
        assert_eq!(trace_id_hex(&Context::new()), None);
        // No span is current here, and no subscriber: nothing to capture.
        assert!(current_context().is_none());
        let bad = [("traceparent", &[0xff_u8, 0xfe][..])];
        assert!(
            !extract_record_headers(bad.iter().copied())
                .span()
                .span_context()
                .is_valid()
        );
    }
}
