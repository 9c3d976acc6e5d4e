//! JSON log lines carry `trace_id`/`span_id` inside a trace and not outside;
//! a quiet log filter does not stop correlation.
#![allow(clippy::unwrap_used)]

mod support;

use http::{Request, Response};
use nexus_telemetry::layer::ServerTraceLayer;
use nexus_telemetry::{LogFormat, TelemetryConfig, build_dispatch};
use serde_json::Value;
use support::Buffer;
use tower::{Layer, ServiceExt};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

fn lines(buf: &Buffer) -> Vec<Value> {
    buf.text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

async fn request_with_traceparent() -> String {
    let svc = ServerTraceLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        tracing::warn!(answer = 42_u64, "inside");
        let sc = opentelemetry::trace::TraceContextExt::span(
            &nexus_telemetry::OpenTelemetrySpanExt::context(&tracing::Span::current()),
        )
        .span_context()
        .span_id()
        .to_string();
        Ok::<_, std::convert::Infallible>(Response::new(sc))
    }));
    let req = Request::get("/x")
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .body(())
        .unwrap();
    svc.oneshot(req).await.unwrap().into_body()
}

#[tokio::test(flavor = "current_thread")]
async fn json_lines_carry_trace_and_span_ids_inside_a_request() {
    let buf = Buffer::default();
    let cfg = TelemetryConfig::new("t")
        .log_format(LogFormat::Json)
        .filter("info");
    let (dispatch, guard) = build_dispatch(cfg, buf.clone()).unwrap();
    assert!(!guard.is_exporting());
    let _d = tracing::dispatcher::set_default(&dispatch);

    tracing::info!("outside");
    let server_span_id = request_with_traceparent().await;

    let lines = lines(&buf);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let outside = &lines[0];
    assert_eq!(outside["message"], "outside");
    assert_eq!(outside["level"], "INFO");
    assert!(outside.get("trace_id").is_none() && outside.get("span_id").is_none());
    assert!(outside["timestamp"].as_str().is_some());

    let inside = &lines[1];
    assert_eq!(inside["message"], "inside");
    assert_eq!(inside["answer"], 42, "numbers stay numbers");
    assert_eq!(inside["span"], "http.server");
    assert_eq!(inside["trace_id"], TRACE);
    assert_eq!(inside["span_id"], server_span_id.as_str());
    assert_ne!(
        server_span_id, PARENT,
        "the line names the server span, not its parent"
    );
    assert!(guard.shutdown().await);
}

#[tokio::test(flavor = "current_thread")]
async fn quiet_log_filter_still_correlates_warnings() {
    let buf = Buffer::default();
    // `warn` hides the INFO request span from the log layer, not from tracing.
    let cfg = TelemetryConfig::new("t")
        .log_format(LogFormat::Json)
        .filter("warn");
    let (dispatch, _guard) = build_dispatch(cfg, buf.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);

    tracing::info!("filtered out");
    let span_id = request_with_traceparent().await;
    let lines = lines(&buf);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["trace_id"], TRACE);
    assert_eq!(lines[0]["span_id"], span_id.as_str());
}

#[tokio::test(flavor = "current_thread")]
async fn human_format_and_bad_filter() {
    let buf = Buffer::default();
    let (dispatch, _g) = build_dispatch(TelemetryConfig::new("t"), buf.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || tracing::info!(k = 1, "plain line"));
    let text = buf.text();
    assert!(
        text.contains("plain line") && text.contains("k=1"),
        "{text}"
    );
    assert!(
        serde_json::from_str::<Value>(text.trim()).is_err(),
        "human, not JSON"
    );

    let bad = build_dispatch(
        TelemetryConfig::new("t").filter("info,[=bad"),
        Buffer::default(),
    );
    assert!(matches!(bad, Err(nexus_telemetry::Error::Filter { .. })));
}
