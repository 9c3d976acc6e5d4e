//! Audit F17: an endpoint that discovery removes takes its breaker and its
//! per-upstream metric series with it, so `/metrics`, `/cb-stats` and
//! `/admin/overview` stop reporting it (an open circuit in particular).

use std::time::Duration;

use anyhow::Result;
use http::StatusCode;
use nexus_testkit::HttpUpstream;

use crate::harness::{BREAKER_YAML, PROXY, TestGateway, eventually, services_json};

/// Breakers that open after 3 failures of 3 calls, and stay open for the test.
async fn metrics(gw: &TestGateway) -> Result<String> {
    Ok(String::from_utf8(
        gw.get("/metrics", None).await?.body.to_vec(),
    )?)
}

#[tokio::test]
async fn a_removed_endpoint_leaves_no_breaker_and_no_metric_series() -> Result<()> {
    let bad = HttpUpstream::builder()
        .name("bad")
        .failure_rate(1.0)
        .failure_status(503)
        .start()
        .await?;
    let good = HttpUpstream::builder().name("good").start().await?;
    let extra = format!("{PROXY}{BREAKER_YAML}");
    let gw = TestGateway::start(&[bad.url(), good.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    // Every request fails on `bad` (and is retried on `good`) until its
    // circuit opens.
    for _ in 0..6 {
        let r = gw.get("/api/products", Some(&token)).await?;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let bad_state = format!(
        r#"nexus_circuit_breaker_state{{upstream="{}"}} 1"#,
        bad.url()
    );
    let bad_label = format!(r#"upstream="{}""#, bad.url());
    let m = metrics(&gw).await?;
    assert!(m.contains(&bad_state), "the circuit is open: {m}");
    let overview = gw.get("/admin/overview", Some(&token)).await?.json();
    assert_eq!(overview["breakers"]["open"], 1, "{overview}");

    // Discovery drops `bad`.
    std::fs::write(gw.services_path(), services_json(&[good.url()]))?;
    let gone = eventually(Duration::from_secs(5), || async {
        metrics(&gw).await.is_ok_and(|m| !m.contains(&bad_label))
    })
    .await;
    let m = metrics(&gw).await?;
    assert!(gone, "no series of the removed endpoint: {m}");
    assert!(
        m.contains(&format!(r#"upstream="{}""#, good.url())),
        "the remaining endpoint keeps its series: {m}"
    );
    let cb = gw.get("/cb-stats", Some(&token)).await?.json();
    let circuits = cb["circuits"].as_array().cloned().unwrap_or_default();
    assert!(
        circuits.iter().all(|c| c["endpoint"] != bad.url().as_str()),
        "{cb}"
    );
    let overview = gw.get("/admin/overview", Some(&token)).await?.json();
    assert_eq!(overview["breakers"]["open"], 0, "{overview}");

    // Back in the file: a fresh, closed breaker.
    std::fs::write(gw.services_path(), services_json(&[bad.url(), good.url()]))?;
    let back = eventually(Duration::from_secs(5), || async {
        gw.get("/lb-stats", Some(&token)).await.is_ok_and(|r| {
            r.json()["endpoints"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
    })
    .await;
    assert!(back, "the endpoint is back");
    bad.set_failure_rate(0.0);
    for _ in 0..4 {
        let r = gw.get("/api/products", Some(&token)).await?;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let cb = gw.get("/cb-stats", Some(&token)).await?.json();
    let c = cb["circuits"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["endpoint"] == bad.url().as_str()))
        .cloned();
    assert_eq!(
        c.as_ref().map(|c| c["state"].clone()),
        Some("closed".into()),
        "{cb}"
    );
    Ok(())
}
