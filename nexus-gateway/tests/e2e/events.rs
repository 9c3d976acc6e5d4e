//! Lifecycle events reach a `nexus_events::Emitter` (in-memory sink here).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use http::StatusCode;
use nexus_events::{Emitter, EventKind};
use nexus_testkit::HttpUpstream;

use crate::harness::{CLIENT_ID, PROXY, TestGateway};

#[tokio::test]
async fn rate_limit_circuit_and_completion_events_are_emitted() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let (emitter, _task, sink) = Emitter::in_memory(1000)?;
    let extra = format!("{PROXY}breaker:\n  volume_threshold: 3\n");
    let gw = TestGateway::start_full(&[up.url()], 6, &extra, None, Some(Arc::new(emitter))).await?;
    let token = gw.token().await?;

    let ok = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(ok.status, StatusCode::OK);
    up.set_status(500);
    for _ in 0..3 {
        gw.get("/api/products", Some(&token)).await?;
    }
    let mut limited = None;
    for _ in 0..5 {
        let r = gw.get("/health", None).await?;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
    }
    let limited = limited.expect("the limiter refused a request");
    let limited_id = limited.header("x-request-id").unwrap().to_owned();

    sink.wait_for(6, Duration::from_secs(3)).await;
    let events = sink.events();
    let completed: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::RequestCompleted(c) => Some((c, e.correlation_id.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(completed.len(), 4, "one per proxied request: {events:?}");
    assert_eq!(completed[0].0.status_code, 200);
    assert_eq!(completed[0].0.client_id, CLIENT_ID);
    assert_eq!(completed[0].0.url, "/api/products");
    assert_eq!(completed[0].1.as_deref(), ok.header("x-request-id"));

    let opened: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CircuitOpened(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(opened.len(), 1, "{events:?}");
    assert_eq!(opened[0].upstream, up.url());
    assert_eq!(
        (opened[0].method.as_str(), opened[0].url.as_str()),
        ("GET", "/api/products")
    );

    let hit = events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::RateLimitHit(h) => Some((h, e.correlation_id.clone())),
            _ => None,
        })
        .expect("a rate_limit.hit event");
    assert_eq!(hit.0.ip, "127.0.0.1");
    assert_eq!(hit.0.url, "/health");
    assert_eq!(hit.1.as_deref(), Some(limited_id.as_str()));
    Ok(())
}
