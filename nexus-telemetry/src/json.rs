//! JSON-lines event formatter that adds `trace_id` and `span_id`.
//!
//! One object per line:
//! `{"timestamp":"…","level":"INFO","target":"…","span":"http.server","trace_id":"…","span_id":"…","message":"…",<event fields>}`.
//! `trace_id`/`span_id` are those of the OpenTelemetry span behind the
//! innermost current `tracing` span, present when that span belongs to a
//! valid trace (sampled or not), so a log line can be pasted into Jaeger.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use serde_json::{Map, Value};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as JSON lines with trace correlation fields.
///
/// Built by [`json_format`], which also returns the [`DispatchCapture`] layer
/// that must sit in the same subscriber: the formatter needs the subscriber's
/// `Dispatch` to ask the OpenTelemetry layer for the current span's ids, and
/// `tracing` hides the dispatcher while an event is being dispatched.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonFormat {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// Captures a weak handle on the subscriber it is registered in, for [`JsonFormat`].
#[derive(Debug, Clone)]
pub(crate) struct DispatchCapture {
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

/// A JSON formatter and the layer that must be installed with it.
pub(crate) fn json_format() -> (JsonFormat, DispatchCapture) {
    let f = JsonFormat::default();
    let c = DispatchCapture {
        dispatch: Arc::clone(&f.dispatch),
    };
    (f, c)
}

impl<S: Subscriber> Layer<S> for DispatchCapture {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        // Weak: the subscriber owns this layer, a strong handle would be a cycle.
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, _event: &Event<'_>, _ctx: Context<'_, S>) {}
}

impl JsonFormat {
    /// Trace and span id of the OpenTelemetry span behind the current span.
    ///
    /// Uses the registry's unfiltered span stack (`Dispatch::current_span`) so
    /// that a request span hidden from the log filter still correlates lines.
    fn ids(&self) -> Option<(String, String)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let current = dispatch.current_span();
        let id = current.id()?;
        // `get_otel_context` locks the span's extensions itself; we hold none here.
        let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let sc = cx.span().span_context().clone();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut obj = Map::with_capacity(8);
        let mut ts = String::with_capacity(32);
        if SystemTime.format_time(&mut Writer::new(&mut ts)).is_ok() {
            obj.insert("timestamp".into(), Value::String(ts));
        }
        let meta = event.metadata();
        obj.insert("level".into(), Value::String(meta.level().as_str().into()));
        obj.insert("target".into(), Value::String(meta.target().into()));

        if let Some(span) = ctx.lookup_current() {
            obj.insert("span".into(), Value::String(span.name().into()));
        }
        if let Some((trace_id, span_id)) = self.ids() {
            obj.insert("trace_id".into(), Value::String(trace_id));
            obj.insert("span_id".into(), Value::String(span_id));
        }

        event.record(&mut JsonVisitor(&mut obj));
        let line = serde_json::to_string(&obj).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Collects event fields into a JSON map, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::String(value.to_string()));
    }
}
