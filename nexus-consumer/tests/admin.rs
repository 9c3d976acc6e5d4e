//! The admin server on its own (no Kafka): an event producer in the same
//! process (as in `full_stack`) shows up in `/stats` and `/metrics`, bad
//! requests get clear answers, and shutdown stops the listener.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use nexus_consumer::Stats;
use nexus_consumer::admin::Admin;
use nexus_events::{Emitter, Event};
use support::http;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_counters_in_stats_and_metrics() {
    let (emitter, task, sink) = Emitter::in_memory(100).unwrap();
    for i in 0..5 {
        emitter.emit(Event::rate_limit_hit(
            "10.0.0.1",
            "GET",
            "/",
            Some(format!("r{i}")),
        ));
    }
    assert_eq!(sink.wait_for(5, Duration::from_secs(5)).await, 5);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        Admin::new(Arc::new(Stats::default()))
            .producer(emitter.stats_handle())
            .serve(listener, async {
                let _ = stopped.await;
            }),
    );

    let (status, ct, body) = http(addr, "GET", "/stats").await;
    assert_eq!((status, ct.as_str()), (200, "application/json"), "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["events_total"], 0, "{json}");
    assert_eq!(json["lag"], serde_json::Value::Null, "{json}");
    let p = &json["producer"];
    assert_eq!(
        (p["emitted"].as_u64(), p["sent"].as_u64()),
        (Some(5), Some(5)),
        "{json}"
    );
    assert_eq!(
        (p["dropped"].as_u64(), p["queued"].as_u64()),
        (Some(0), Some(0)),
        "{json}"
    );
    assert_eq!(p["queue_capacity"], 65_536, "{json}");

    let (status, ct, metrics) = http(addr, "GET", "/metrics").await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "text/plain; version=0.0.4; charset=utf-8")
    );
    nexus_testkit::promtool::check_metrics(&metrics)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    for line in [
        "nexus_events_emitted_total 5",
        "nexus_events_sent_total 5",
        "nexus_events_dropped_total{reason=\"queue_full\"} 0",
        "nexus_events_queued 0",
        "nexus_consumer_events_total{type=\"gateway.rate_limit.hit\"} 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in\n{metrics}"
        );
    }
    // Lag is not reported before it is known.
    assert!(!metrics.contains("nexus_consumer_lag"), "{metrics}");

    // The same answers as the cache proxy's admin server.
    let (status, ct, body) = http(addr, "GET", "/healthz").await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (200, "application/json", r#"{"status":"ok"}"#)
    );
    let (status, ct, body) = http(addr, "DELETE", "/metrics").await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (405, "application/json", r#"{"error":"method not allowed"}"#)
    );
    let (status, ct, body) = http(addr, "GET", "/stats/../metrics").await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (404, "application/json", r#"{"error":"not found"}"#)
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    task.shutdown(Duration::from_secs(1)).await;
}
