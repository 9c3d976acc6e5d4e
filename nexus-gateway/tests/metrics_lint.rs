//! The gateway's `/metrics` passes `promtool check metrics` (the Prometheus
//! project's own linter) after real traffic has created every series: proxied
//! requests, upstream latencies, a rate-limit rejection and a circuit opening.
//!
//! One deliberate exception: the two latency histograms keep the seed's names
//! (`nexus_http_request_duration_ms`, `nexus_upstream_request_duration_ms`,
//! which the issue, the Grafana dashboard and existing alerts use), and
//! promtool's lint flags the `_ms` unit as abbreviated. Those two complaints,
//! and only those, are accepted; anything else fails the test.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;

use std::time::Duration;

use anyhow::Result;
use http::StatusCode;
use nexus_testkit::HttpUpstream;

use harness::{PROXY, TestGateway};

/// The only promtool complaints accepted: the seed's histogram names.
const SEED_NAME_LINTS: [&str; 2] = [
    "nexus_http_request_duration_ms metric names should not contain abbreviated units",
    "nexus_upstream_request_duration_ms metric names should not contain abbreviated units",
];

#[tokio::test]
async fn metrics_pass_promtool_after_traffic() -> Result<()> {
    let ok = HttpUpstream::start().await?;
    let failing = HttpUpstream::builder()
        .json(500, r#"{"error":"down"}"#)
        .start()
        .await?;
    // Capacity 12: the token, 9 proxied requests and one /metrics read fit;
    // the burst after that is rejected.
    let gw = TestGateway::start(
        &[ok.url(), failing.url()],
        12,
        &format!("{PROXY}breaker:\n  volume_threshold: 2\n  reset_timeout_ms: 60000\n"),
    )
    .await?;
    let token = gw.token().await?;
    for _ in 0..8 {
        gw.get("/api/products", Some(&token)).await?;
    }
    let mut limited = false;
    for _ in 0..10 {
        limited |=
            gw.get("/api/products", Some(&token)).await?.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(limited, "the burst was never rate limited");

    // /metrics is public but rate limited too: wait for a token.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // promtool parses the classic text format; the gateway serves it when
    // asked (Prometheus itself asks for OpenMetrics).
    let req = http::Request::get("/metrics")
        .header("accept", "text/plain")
        .body(bytes::Bytes::new())?;
    let reply = harness::send(gw.addr, req).await?;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(reply.body.to_vec())?;
    // Every family is populated, so the lint sees every name.
    for series in [
        "nexus_http_requests_total{",
        "nexus_rate_limit_hits_total",
        "nexus_circuit_breaker_opens_total{",
        "nexus_circuit_breaker_state{",
        "nexus_http_request_duration_ms_bucket{",
        "nexus_upstream_request_duration_ms_bucket{",
    ] {
        assert!(text.contains(series), "{series} missing:\n{text}");
    }
    match nexus_testkit::promtool::check_metrics(&text).await {
        Ok(()) => {}
        Err(nexus_testkit::Error::Client { stderr, .. }) => {
            let unexpected: Vec<&str> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty() && !SEED_NAME_LINTS.contains(&l.trim()))
                .collect();
            assert!(
                unexpected.is_empty(),
                "promtool: {unexpected:#?}\nexposition:\n{text}"
            );
        }
        Err(e) => return Err(e.into()),
    }
    gw.shutdown().await
}
