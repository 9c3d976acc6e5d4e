//! A request the client gives up on (disconnects before the response) is
//! recorded with status 499 in `/telemetry`, `/metrics` and the
//! `request.completed` event.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use nexus_events::{Emitter, EventKind};
use nexus_testkit::HttpUpstream;
use tokio::io::AsyncWriteExt as _;

use crate::harness::{PROXY, TestGateway, eventually};

#[tokio::test]
async fn a_client_that_disconnects_before_the_response_is_recorded_as_499() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let (emitter, _task, sink) = Emitter::in_memory(1000)?;
    let proxy = PROXY.replace("timeout_ms: 2000", "timeout_ms: 20000");
    let gw =
        TestGateway::start_full(&[up.url()], 1000, &proxy, None, Some(Arc::new(emitter))).await?;
    let token = gw.token().await?;
    // Slower than the client's patience, well within proxy.timeout_ms, so the
    // only way to a recorded entry before it answers is the client leaving.
    up.set_latency(Duration::from_secs(8));

    let mut client = tokio::net::TcpStream::connect(gw.addr).await?;
    let req = format!(
        "GET /api/slow-path HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\nx-request-id: gone-1\r\n\r\n",
        gw.addr
    );
    client.write_all(req.as_bytes()).await?;
    // The request reaches the upstream, then the client goes away.
    assert!(
        eventually(Duration::from_secs(3), || async { up.requests() >= 1 }).await,
        "the request reached the upstream"
    );
    drop(client);

    let seen = eventually(Duration::from_secs(5), || async {
        let t = gw.get("/telemetry", Some(&token)).await;
        t.is_ok_and(|t| {
            t.json()["requests"]
                .as_array()
                .is_some_and(|r| r.iter().any(|e| e["path"] == "/api/slow-path"))
        })
    })
    .await;
    assert!(seen, "recorded before the upstream answered (8 s)");
    up.set_latency(Duration::ZERO);

    let t = gw.get("/telemetry", Some(&token)).await?.json();
    let entries: Vec<_> = t["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"] == "/api/slow-path")
        .collect();
    assert_eq!(entries.len(), 1, "recorded once: {t}");
    assert_eq!(entries[0]["status"], 499);
    assert_eq!(entries[0]["method"], "GET");
    assert_eq!(entries[0]["ip"], "127.0.0.1");

    let m = String::from_utf8(gw.get("/metrics", None).await?.body.to_vec())?;
    assert!(
        m.contains(r#"nexus_http_requests_total{method="GET",route="/api/*",status_code="499"} 1"#),
        "{m}"
    );

    assert!(
        sink.wait_for(1, Duration::from_secs(3)).await >= 1,
        "an event"
    );
    let events = sink.events();
    let completed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RequestCompleted(c) if c.url == "/api/slow-path" => {
                Some((c, e.correlation_id.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    assert_eq!(completed[0].0.status_code, 499);
    assert_eq!(completed[0].1.as_deref(), Some("gone-1"));
    gw.shutdown().await
}
