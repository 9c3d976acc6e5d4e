//! Trace context from an incoming request to the Kafka record of the event
//! that request produced: real broker (Tansu), real upstream, the gateway on
//! a real socket, and the `gateway.request.completed` record read back by an
//! independent client (confluent-kafka) with its `traceparent` header.
//!
//! The header's span is checked against the gateway's own JSON log line for
//! the same request (`trace_id`/`span_id` of the span it was written in), so
//! "same trace id, a span of ours" is proved, not only "some header".

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_events::{Event, EventKind, TOPIC_REQUEST_COMPLETED};
use nexus_telemetry::{LogFormat, TelemetryConfig, build_dispatch};
use nexus_testkit::{Consumed, HttpUpstream, KafkaBroker};
use serde_json::Value;

use crate::harness::{CLIENT_ID, PROXY, TestGateway, keep_callsite_interest, send};

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID: &str = "b7ad6b7169203331";
const ZERO_TRACE: &str = "00000000000000000000000000000000";
const ZERO_SPAN: &str = "0000000000000000";
/// Bound on reading the records back (the client is a subprocess).
const CONSUME: Duration = Duration::from_secs(30);

/// JSON log lines written by the subscriber, shared with the test.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The subscriber: OpenTelemetry layer (no exporter: ids only) plus JSON
    /// logs of the entry layer's `request completed` line.
    fn dispatch(&self) -> Result<(tracing::Dispatch, nexus_telemetry::TelemetryGuard)> {
        keep_callsite_interest();
        let cfg = TelemetryConfig::new("gw-kafka-trace-test")
            .log_format(LogFormat::Json)
            .filter("warn,nexus_gateway::layers::entry=debug");
        let logs = self.clone();
        Ok(build_dispatch(cfg, move || logs.clone())?)
    }

    /// The `request completed` line of the request in trace `trace_id`.
    fn completed_line(&self, trace_id: &str) -> Result<Value> {
        let text = String::from_utf8(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())?;
        let lines: Vec<Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let mut found = lines
            .iter()
            .filter(|l| l["message"] == "request completed" && l["trace_id"] == trace_id);
        let line = found
            .next()
            .with_context(|| format!("no `request completed` line in trace {trace_id}:\n{text}"))?;
        ensure!(found.next().is_none(), "two lines in {trace_id}:\n{text}");
        Ok(line.clone())
    }
}

/// Broker, upstream and gateway (events to the broker; tracing as given).
struct Stack {
    broker: KafkaBroker,
    up: HttpUpstream,
    gw: TestGateway,
    token: String,
}

impl Stack {
    async fn start(tracing_enabled: bool) -> Result<Self> {
        let broker = KafkaBroker::start().await?;
        broker
            .client()
            .create_topic(TOPIC_REQUEST_COMPLETED, 1)
            .await?;
        let up = HttpUpstream::start().await?;
        let tracing = if tracing_enabled {
            "tracing:\n  enabled: true\n"
        } else {
            "tracing:\n  enabled: false\n"
        };
        let extra = format!(
            "{PROXY}events:\n  kafka_bootstrap: \"{}\"\n{tracing}",
            broker.bootstrap()
        );
        let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
        let token = gw.token().await?;
        Ok(Self {
            broker,
            up,
            gw,
            token,
        })
    }

    /// One proxied GET with our request id and optional `traceparent`;
    /// returns the `traceparent` the upstream saw, if any.
    async fn get(&self, request_id: &str, traceparent: Option<&str>) -> Result<Option<String>> {
        let mut req = Request::get("/api/products")
            .header("authorization", format!("Bearer {}", self.token))
            .header("x-request-id", request_id);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let r = send(self.gw.addr, req.body(Bytes::new())?).await?;
        ensure!(r.status == StatusCode::OK, "{} {:?}", r.status, r.body);
        ensure!(r.header("x-request-id") == Some(request_id), "{r:?}");
        let seen = self.up.last_headers().context("upstream saw no request")?;
        Ok(seen
            .get("traceparent")
            .map(|v| v.to_str().map(str::to_owned))
            .transpose()?)
    }

    /// `count` `gateway.request.completed` records, by record key.
    async fn records(&self, count: usize) -> Result<BTreeMap<String, Consumed>> {
        let read = self
            .broker
            .client()
            .consume(TOPIC_REQUEST_COMPLETED, count, CONSUME)
            .await?;
        ensure!(read.len() == count, "{read:?}");
        let mut by_key = BTreeMap::new();
        for m in read {
            let key = m.key.clone().with_context(|| format!("no key: {m:?}"))?;
            ensure!(by_key.insert(key, m).is_none(), "duplicate key");
        }
        Ok(by_key)
    }
}

/// `traceparent` = `00-<trace id>-<span id>-<flags>`, shape checked.
fn parts(tp: &str) -> (String, String, String) {
    let p: Vec<&str> = tp.split('-').collect();
    assert_eq!(p.len(), 4, "{tp}");
    assert_eq!(p[0], "00", "version: {tp}");
    assert!(
        p[1].len() == 32 && p[1].bytes().all(|b| b.is_ascii_hexdigit()),
        "{tp}"
    );
    assert!(
        p[2].len() == 16 && p[2].bytes().all(|b| b.is_ascii_hexdigit()),
        "{tp}"
    );
    assert_ne!(p[1], ZERO_TRACE, "{tp}");
    assert_ne!(p[2], ZERO_SPAN, "{tp}");
    (p[1].to_owned(), p[2].to_owned(), p[3].to_owned())
}

fn header(m: &Consumed) -> Option<String> {
    m.headers.get("traceparent").cloned().flatten()
}

/// The record is the seed's `gateway.request.completed` JSON for this request,
/// keyed by its request id, with no trace fields in the payload.
fn check_event(m: &Consumed, request_id: &str) -> Result<()> {
    assert_eq!(m.key.as_deref(), Some(request_id), "{m:?}");
    let text = m.value.as_deref().context("no value")?;
    let json: Value = serde_json::from_str(text)?;
    assert_eq!(json["type"], "gateway.request.completed", "{json}");
    assert_eq!(json["method"], "GET", "{json}");
    assert_eq!(json["url"], "/api/products", "{json}");
    assert_eq!(json["statusCode"], 200, "{json}");
    assert_eq!(json["clientId"], CLIENT_ID, "{json}");
    assert_eq!(json["correlationId"], request_id, "{json}");
    assert!(
        json["latencyMs"].as_f64().is_some_and(|l| l >= 0.0),
        "{json}"
    );
    // Exactly the seed's fields: the trace context is not in the payload.
    let mut keys: Vec<&str> = json
        .as_object()
        .context("not an object")?
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "clientId",
            "correlationId",
            "emittedAt",
            "latencyMs",
            "method",
            "statusCode",
            "type",
            "url",
            "v"
        ],
        "{text}"
    );
    let event = Event::from_json(text.as_bytes())?;
    let EventKind::RequestCompleted(c) = event.kind else {
        panic!("{event:?}")
    };
    assert_eq!(
        (c.url.as_str(), c.status_code, c.client_id.as_str()),
        ("/api/products", 200, CLIENT_ID)
    );
    Ok(())
}

// current_thread runtime: the gateway's tasks run on this thread, so the
// thread-local subscriber sees their spans (no global state installed).
#[tokio::test]
async fn request_completed_record_carries_the_request_trace() -> Result<()> {
    let logs = Logs::default();
    let (dispatch, _guard) = logs.dispatch()?;
    let _default = tracing::dispatcher::set_default(&dispatch);
    let stack = Stack::start(true).await?;

    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let upstream_tp = stack
        .get("req-traced", Some(&incoming))
        .await?
        .context("tracing on: upstream gets a traceparent")?;
    stack.get("req-fresh", None).await?;
    let records = stack.records(2).await?;

    // The incoming trace is continued: same trace id, a span of the gateway.
    let m = &records["req-traced"];
    check_event(m, "req-traced")?;
    let tp = header(m).with_context(|| format!("no traceparent header: {m:?}"))?;
    let (trace, span, flags) = parts(&tp);
    assert_eq!(trace, TRACE_ID, "incoming trace id not kept: {tp}");
    assert_ne!(span, PARENT_ID, "must be the gateway's span: {tp}");
    assert_eq!(flags, "01", "sampled flag kept: {tp}");
    // It is the gateway's request span: the one its log line was written in.
    let line = logs.completed_line(TRACE_ID)?;
    assert_eq!(line["span"], "request", "{line}");
    assert_eq!(line["span_id"], span.as_str(), "{line} vs {tp}");
    // Same trace as the upstream call; the upstream's parent is the CLIENT span.
    let (up_trace, up_span, _) = parts(&upstream_tp);
    assert_eq!(up_trace, TRACE_ID, "{upstream_tp}");
    assert_ne!(up_span, span, "{upstream_tp} vs {tp}");

    // No incoming header: a fresh trace, still in the header and the log.
    let m = &records["req-fresh"];
    check_event(m, "req-fresh")?;
    let tp = header(m).with_context(|| format!("no traceparent header: {m:?}"))?;
    let (trace, span, _) = parts(&tp);
    assert_ne!(trace, TRACE_ID, "{tp}");
    let line = logs.completed_line(&trace)?;
    assert_eq!(line["span_id"], span.as_str(), "{line} vs {tp}");

    stack.gw.shutdown().await?;
    Ok(())
}

/// `tracing.enabled: false`: no server span continues the incoming trace, but
/// the entry layer's `request` span still exists, so with an OpenTelemetry
/// subscriber installed the event carries that span's context: a new trace,
/// not the client's (which is forwarded upstream untouched). Without such a
/// subscriber there is no span context and no header at all.
#[tokio::test]
async fn disabled_records_the_request_span_not_the_incoming_trace() -> Result<()> {
    let logs = Logs::default();
    let (dispatch, guard) = logs.dispatch()?;
    let default = tracing::dispatcher::set_default(&dispatch);
    let stack = Stack::start(false).await?;

    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let upstream_tp = stack.get("req-with-subscriber", Some(&incoming)).await?;
    assert_eq!(upstream_tp.as_deref(), Some(incoming.as_str()));
    drop(default);
    drop(guard);
    let upstream_tp = stack.get("req-no-subscriber", Some(&incoming)).await?;
    assert_eq!(upstream_tp.as_deref(), Some(incoming.as_str()));
    let records = stack.records(2).await?;

    let m = &records["req-with-subscriber"];
    check_event(m, "req-with-subscriber")?;
    let tp = header(m).with_context(|| format!("no traceparent header: {m:?}"))?;
    let (trace, span, _) = parts(&tp);
    assert_ne!(
        trace, TRACE_ID,
        "tracing disabled continued the trace: {tp}"
    );
    let line = logs.completed_line(&trace)?;
    assert_eq!(line["span"], "request", "{line}");
    assert_eq!(line["span_id"], span.as_str(), "{line} vs {tp}");

    let m = &records["req-no-subscriber"];
    check_event(m, "req-no-subscriber")?;
    assert_eq!(header(m), None, "{m:?}");

    stack.gw.shutdown().await?;
    Ok(())
}
