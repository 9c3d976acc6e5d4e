//! `tracing.enabled`: an incoming `traceparent` is continued upstream (same
//! trace id, the gateway's own `CLIENT` span as parent); disabled adds nothing.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_telemetry::{TelemetryConfig, build_dispatch};
use nexus_testkit::HttpUpstream;

use crate::harness::{PROXY, TestGateway, send};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// Proxies one `/api/products` (with the given incoming `traceparent`, if
/// any); returns the `traceparent` the upstream saw, if any.
async fn upstream_traceparent(yaml_extra: &str, incoming: Option<&str>) -> Result<Option<String>> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{yaml_extra}")).await?;
    let token = gw.token().await?;
    let mut req = Request::get("/api/products").header("authorization", format!("Bearer {token}"));
    if let Some(tp) = incoming {
        req = req.header("traceparent", tp);
    }
    let req = req.body(Bytes::new())?;
    let r = send(gw.addr, req).await?;
    assert_eq!(r.status, StatusCode::OK);
    let seen = up.last_headers().context("upstream saw no request")?;
    let tp = seen
        .get("traceparent")
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()?;
    gw.shutdown().await?;
    Ok(tp)
}

// current_thread runtime: the gateway's tasks run on this thread, so the
// thread-local subscriber below sees their spans (no global state installed).
#[tokio::test]
async fn enabled_continues_the_incoming_trace() -> Result<()> {
    let (dispatch, _guard) = build_dispatch(TelemetryConfig::new("gw-test"), std::io::sink)?;
    crate::harness::keep_callsite_interest();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let tp = upstream_traceparent("tracing:\n  enabled: true\n", Some(&incoming))
        .await?
        .context("no traceparent sent upstream")?;
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00", "{tp}");
    assert_eq!(parts[1], TRACE_ID, "trace id not kept: {tp}");
    assert_eq!(parts[2].len(), 16, "{tp}");
    assert_ne!(
        parts[2], PARENT_ID,
        "parent must be the gateway's span: {tp}"
    );
    assert_ne!(parts[2], "0000000000000000", "{tp}");
    assert_eq!(parts[3], "01", "{tp}");
    Ok(())
}

#[tokio::test]
async fn enabled_starts_a_trace_without_incoming_header() -> Result<()> {
    let (dispatch, _guard) = build_dispatch(TelemetryConfig::new("gw-test"), std::io::sink)?;
    crate::harness::keep_callsite_interest();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let tp = upstream_traceparent("tracing:\n  enabled: true\n", None)
        .await?
        .context("no traceparent sent upstream")?;
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1].len(), 32, "{tp}");
    assert_ne!(parts[1], "00000000000000000000000000000000", "{tp}");
    Ok(())
}

#[tokio::test]
async fn disabled_adds_no_traceparent() -> Result<()> {
    let (dispatch, _guard) = build_dispatch(TelemetryConfig::new("gw-test"), std::io::sink)?;
    crate::harness::keep_callsite_interest();
    let _default = tracing::dispatcher::set_default(&dispatch);
    assert_eq!(upstream_traceparent("", None).await?, None);
    // A client's own header is forwarded untouched (no span of ours in it).
    let incoming = format!("00-{TRACE_ID}-{PARENT_ID}-01");
    let tp = upstream_traceparent("", Some(&incoming)).await?;
    assert_eq!(tp.as_deref(), Some(incoming.as_str()));
    Ok(())
}

#[tokio::test]
async fn tracing_section_rejects_unknown_keys() {
    let cfg: Result<nexus_gateway::GatewayConfig, _> =
        serde_yaml_ng::from_str("tracing:\n  enabeld: true\n");
    let err = cfg.expect_err("typo must be rejected").to_string();
    assert!(err.contains("enabeld"), "{err}");
}

#[tokio::test]
async fn each_retry_attempt_is_its_own_client_span() -> Result<()> {
    let (dispatch, _guard) = build_dispatch(TelemetryConfig::new("gw-test"), std::io::sink)?;
    crate::harness::keep_callsite_interest();
    let _default = tracing::dispatcher::set_default(&dispatch);
    let a = HttpUpstream::start().await?;
    let b = HttpUpstream::start().await?;
    a.set_json(502, "{}");
    b.set_json(502, "{}");
    let gw = TestGateway::start(
        &[a.url(), b.url()],
        1000,
        &format!("{PROXY}tracing:\n  enabled: true\n"),
    )
    .await?;
    let token = gw.token().await?;
    let req = Request::get("/api/products")
        .header("authorization", format!("Bearer {token}"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .body(Bytes::new())?;
    let r = send(gw.addr, req).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let mut parents = Vec::new();
    for up in [&a, &b] {
        let seen = up.last_headers().context("both upstreams tried")?;
        let tp = seen.get("traceparent").context("traceparent")?.to_str()?;
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[1], TRACE_ID, "{tp}");
        parents.push(parts[2].to_owned());
    }
    assert_ne!(parents[0], parents[1], "retries must be separate spans");
    assert!(!parents.iter().any(|p| p == PARENT_ID));
    gw.shutdown().await?;
    Ok(())
}
