//! Failover, breakers, discovery, timeouts, rate limiting and graceful shutdown.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_testkit::HttpUpstream;

use crate::harness::{PROXY, TestGateway, eventually, send, services_json};

#[tokio::test]
async fn failover_when_an_upstream_is_killed() -> Result<()> {
    let a = HttpUpstream::builder().name("a").start().await?;
    let b = HttpUpstream::builder().name("b").start().await?;
    let gw = TestGateway::start(&[a.url(), b.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    for _ in 0..4 {
        assert_eq!(
            gw.get("/api/products", Some(&token)).await?.status,
            StatusCode::OK
        );
    }
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "both upstreams serve while healthy"
    );
    a.stop().await;
    let before = b.requests();
    for i in 0..20 {
        let r = gw.get("/api/products", Some(&token)).await?;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} after the kill: {:?}",
            r.body
        );
    }
    assert_eq!(
        b.requests() - before,
        20,
        "the survivor answered every request"
    );
    Ok(())
}

#[tokio::test]
async fn breaker_opens_on_failures_and_closes_after_recovery() -> Result<()> {
    let up = HttpUpstream::builder().name("flaky").start().await?;
    let extra = format!(
        "{PROXY}breaker:\n  error_threshold_percent: 50\n  volume_threshold: 3\n  reset_timeout_ms: 400\n"
    );
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    up.set_status(500);
    for _ in 0..3 {
        assert_eq!(
            gw.get("/api/products", Some(&token)).await?.status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    let calls = up.requests();
    // Open: fail fast with 503, no upstream attempt.
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(
        up.requests(),
        calls,
        "an open circuit makes no upstream call"
    );
    let cb = gw.get("/cb-stats", Some(&token)).await?.json();
    assert_eq!(cb["circuits"][0]["state"], "open", "{cb}");
    let metrics = String::from_utf8(gw.get("/metrics", None).await?.body.to_vec())?;
    let label = format!("upstream=\"{}\"", up.url());
    assert!(
        metrics.contains(&format!("nexus_circuit_breaker_opens_total{{{label}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("nexus_circuit_breaker_state{{{label}}} 1")),
        "{metrics}"
    );

    // Recovery: after the reset timeout a probe succeeds and the circuit closes.
    up.set_status(200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        gw.get("/api/products", Some(&token)).await?.status,
        StatusCode::OK
    );
    let cb = gw.get("/cb-stats", Some(&token)).await?.json();
    assert_eq!(cb["circuits"][0]["state"], "closed", "{cb}");
    let metrics = String::from_utf8(gw.get("/metrics", None).await?.body.to_vec())?;
    assert!(
        metrics.contains(&format!("nexus_circuit_breaker_state{{{label}}} 0")),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn services_json_edit_takes_effect() -> Result<()> {
    let a = HttpUpstream::builder().name("a").start().await?;
    let b = HttpUpstream::builder().name("b").start().await?;
    let gw = TestGateway::start(&[a.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    assert_eq!(
        gw.get("/api/x", Some(&token))
            .await?
            .header("x-nexus-upstream"),
        Some("a")
    );
    std::fs::write(gw.services_path(), services_json(&[b.url()]))?;
    let switched = eventually(Duration::from_secs(3), || async {
        gw.get("/api/x", Some(&token))
            .await
            .ok()
            .and_then(|r| r.header("x-nexus-upstream").map(str::to_owned))
            == Some("b".to_owned())
    })
    .await;
    assert!(switched, "the gateway follows services.json");
    let a_before = a.requests();
    for _ in 0..5 {
        assert_eq!(
            gw.get("/api/x", Some(&token))
                .await?
                .header("x-nexus-upstream"),
            Some("b")
        );
    }
    assert_eq!(
        a.requests(),
        a_before,
        "the removed upstream gets no traffic"
    );
    // An invalid file is ignored: the old set stays.
    std::fs::write(gw.services_path(), "{ not json")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.get("/api/x", Some(&token))
            .await?
            .header("x-nexus-upstream"),
        Some("b")
    );
    Ok(())
}

#[tokio::test]
async fn status_mapping_timeout_no_endpoint_exhausted() -> Result<()> {
    // 504: the upstream is slower than the timeout.
    let slow = HttpUpstream::builder()
        .latency(Duration::from_millis(800))
        .start()
        .await?;
    let extra = "proxy:\n  services_file: \"@SERVICES@\"\n  timeout_ms: 150\n  retry_backoff_ms: 0\n  max_attempts: 1\n";
    let gw = TestGateway::start(&[slow.url()], 1000, extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/slow", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", r.body);

    // 503: no endpoint at all.
    let gw = TestGateway::start(&[], 1000, crate::harness::PROXY).await?;
    let token = gw.token().await?;
    assert_eq!(
        gw.get("/api/x", Some(&token)).await?.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // 502: every attempt fails at the transport level (upstream stopped).
    let dead = HttpUpstream::start().await?;
    dead.stop().await;
    let extra = "proxy:\n  services_file: \"@SERVICES@\"\n  retry_backoff_ms: 0\nbreaker:\n  enabled: false\n";
    let gw = TestGateway::start(&[dead.url()], 1000, extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/x", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{:?}", r.body);
    assert_eq!(r.json()["error"], "upstream_failed");
    Ok(())
}

#[tokio::test]
async fn non_idempotent_requests_are_not_retried() -> Result<()> {
    let up = HttpUpstream::builder().start().await?;
    up.set_status(503);
    let extra = "proxy:\n  services_file: \"@SERVICES@\"\n  retry_backoff_ms: 0\nbreaker:\n  enabled: false\n";
    let gw = TestGateway::start(&[up.url()], 1000, extra).await?;
    let token = gw.token().await?;
    let req = Request::post("/api/orders")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::from_static(b"{\"q\":1}"))?;
    let r = send(gw.addr, req).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.requests(), 1, "a POST is sent once");
    assert_eq!(
        &up.last_request().unwrap().body[..],
        b"{\"q\":1}",
        "the body streamed through"
    );
    up.reset_requests();
    let r = gw.get("/api/items", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.requests(), 3, "a GET is tried max_attempts times");
    Ok(())
}

#[tokio::test]
async fn rate_limit_429_after_ten_rapid_requests() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 10, PROXY).await?;
    let mut statuses = Vec::new();
    for _ in 0..11 {
        statuses.push(gw.get("/health", None).await?);
    }
    assert!(statuses[..10].iter().all(|r| r.status == StatusCode::OK));
    let last = &statuses[10];
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = last.header("retry-after").unwrap().parse()?;
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert!(last.header("ratelimit-policy").is_some());
    assert!(
        last.header("x-request-id").is_some(),
        "rejections carry the request id too"
    );
    // Counted without a per-IP label. (This scrape is itself limited, so wait for a token.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let metrics = String::from_utf8(gw.get("/metrics", None).await?.body.to_vec())?;
    assert!(
        metrics.contains("nexus_rate_limit_hits_total 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn graceful_shutdown_drains_in_flight_requests() -> Result<()> {
    let up = HttpUpstream::builder()
        .latency(Duration::from_millis(600))
        .start()
        .await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let addr = gw.addr;
    let in_flight = tokio::spawn({
        let token = token.clone();
        async move {
            send(
                addr,
                Request::get("/api/slow")
                    .header("authorization", format!("Bearer {token}"))
                    .body(Bytes::new())?,
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    gw.shutdown().await?;
    let r = in_flight.await??;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the in-flight request completed during the drain"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    Ok(())
}
