//! Emitter behaviour at its bounds, and the request.completed layer.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use nexus_events::{
    ClientId, CompletedLayer, DeliveryReport, Emitter, EmitterConfig, Event, EventKind, EventSink,
    MemorySink,
};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// A sink that delivers only when the test releases a permit.
struct Gated(Arc<Semaphore>, MemorySink);

impl EventSink for Gated {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        self.0.acquire().await.unwrap().forget();
        self.1.deliver(batch).await
    }
}

fn hit(i: usize) -> Event {
    Event::rate_limit_hit("10.0.0.1", "GET", format!("/{i}"), None)
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let gate = Arc::new(Semaphore::new(0));
    let memory = MemorySink::new(1_000);
    let config = EmitterConfig {
        capacity: 10,
        max_batch: 10,
        linger: Duration::ZERO,
        ..EmitterConfig::default()
    };
    let (emitter, task) = Emitter::spawn(Gated(gate.clone(), memory.clone()), config).unwrap();
    // The task takes the first batch and blocks in the sink; then 10 fit in the queue.
    emitter.emit(hit(0));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 1..=100 {
        emitter.emit(hit(i));
    }
    let s = emitter.stats();
    assert_eq!(s.emitted, 11);
    assert_eq!(s.dropped_full, 90);
    gate.add_permits(100);
    assert_eq!(memory.wait_for(11, Duration::from_secs(5)).await, 11);
    let stats = task.shutdown(Duration::from_secs(5)).await;
    assert_eq!((stats.sent, stats.failed, stats.dropped()), (11, 0, 90));
    // After shutdown, emit still returns and counts.
    emitter.emit(hit(999));
    assert_eq!(emitter.stats().dropped_closed, 1);
}

#[tokio::test]
async fn shutdown_delivers_what_is_queued() {
    let (emitter, task, memory) = Emitter::in_memory(10_000).unwrap();
    for i in 0..5_000 {
        emitter.emit(hit(i));
    }
    let stats = task.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats.sent, 5_000);
    assert_eq!(memory.len(), 5_000);
}

#[test]
fn invalid_config_is_a_typed_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let zero = EmitterConfig {
        capacity: 0,
        ..EmitterConfig::default()
    };
    let err = Emitter::spawn(MemorySink::new(1), zero).unwrap_err();
    assert!(err.to_string().contains("capacity"));
}

#[tokio::test(start_paused = true)]
async fn layer_emits_request_completed_with_measured_latency() {
    let (emitter, task, memory) = Emitter::in_memory(100).unwrap();
    let svc = ServiceBuilder::new()
        .layer(CompletedLayer::new(emitter))
        .service(service_fn(|req: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let status = if req.uri().path() == "/missing" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            let mut resp = Response::builder().status(status).body(()).unwrap();
            resp.extensions_mut()
                .insert(ClientId("gateway-client".into()));
            Ok::<_, Infallible>(resp)
        }));
    let req = Request::get("/missing?x=1")
        .header("x-request-id", "req-42")
        .body(())
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let anon = Request::post("/api").body(()).unwrap();
    svc.oneshot(anon).await.unwrap();
    task.shutdown(Duration::from_secs(1)).await;

    let events = memory.events();
    assert_eq!(events.len(), 2);
    let EventKind::RequestCompleted(first) = &events[0].kind else {
        panic!()
    };
    assert_eq!(events[0].correlation_id.as_deref(), Some("req-42"));
    assert_eq!(
        (first.method.as_str(), first.url.as_str(), first.status_code),
        ("GET", "/missing?x=1", 404)
    );
    assert_eq!(first.client_id, "gateway-client");
    assert!(
        (first.latency_ms - 250.0).abs() < 1.0,
        "paused clock: {}",
        first.latency_ms
    );
    let EventKind::RequestCompleted(second) = &events[1].kind else {
        panic!()
    };
    assert_eq!(events[1].correlation_id, None);
    assert_eq!(second.method, "POST");
    assert_eq!(second.client_id, "gateway-client");
}
