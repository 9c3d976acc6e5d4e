//! The consumer's observability against real components: events produced to
//! a real broker (Tansu) inside a request span are handled in
//! `consumer.handle` spans of the same trace (checked in the OTLP export a
//! real receiver decodes), and the admin server's `/metrics` (linted by
//! `promtool`) and `/stats` count what was handled.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nexus_consumer::handlers::Handlers;
use nexus_consumer::{ConsumerService, ServiceConfig, Stats};
use nexus_events::kafka::{Acks, ProducerConfig};
use nexus_events::{
    Emitter, EmitterConfig, Event, KafkaSink, RequestCompleted, TOPIC_RATE_LIMIT_HIT, TraceContext,
};
use nexus_telemetry::{BatchSettings, OpenTelemetrySpanExt as _, TelemetryConfig, propagation};
use nexus_testkit::otlp::{Receiver, attr, hex};
use nexus_testkit::{KafkaBroker, RedisServer};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::http;
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};

const IP: &str = "10.9.9.9";

fn completed() -> Event {
    Event::request_completed(
        RequestCompleted {
            method: "GET".into(),
            url: "/api/products".into(),
            status_code: 200,
            latency_ms: 3.0,
            client_id: "gateway-client".into(),
        },
        Some("req-untraced".into()),
    )
}

async fn wait_until(stats: &Stats, want_events: u64) {
    timeout(Duration::from_secs(60), async {
        while stats.events_total() < want_events {
            sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "handled {} events, want {want_events}",
            stats.events_total()
        )
    });
}

// One test per binary: it installs the process-wide subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_spans_join_the_producing_trace_and_admin_counts_the_events() {
    let mut receiver = Receiver::start().await.unwrap();
    let batch = BatchSettings {
        scheduled_delay: Duration::from_millis(50),
        export_timeout: Duration::from_secs(2),
        ..BatchSettings::default()
    };
    let cfg = TelemetryConfig::new("nexus-consumer-test")
        .otlp_endpoint(Some(receiver.endpoint()))
        .batch(batch);
    let (dispatch, guard) = nexus_telemetry::build_dispatch(cfg, std::io::sink).unwrap();
    tracing::dispatcher::set_global_default(dispatch).unwrap();

    let kafka = KafkaBroker::start().await.unwrap();
    let redis = RedisServer::start().await.unwrap();

    // The gateway side: six rate-limit hits inside one request span, one
    // completed request outside any span.
    let mut producer = ProducerConfig::new(&kafka.bootstrap());
    producer.acks = Acks::All;
    producer.create_topics = Some(nexus_events::kafka::TopicSpec::default());
    let (emitter, task) =
        Emitter::spawn(KafkaSink::new(producer).unwrap(), EmitterConfig::default()).unwrap();
    let request = tracing::info_span!("GET /api/products", otel.kind = "server");
    let cx = request.context();
    let trace_id = propagation::trace_id_hex(&cx).unwrap();
    let request_span_id = propagation::span_id_hex(&cx).unwrap();
    request.in_scope(|| {
        for _ in 0..6 {
            emitter.emit(Event::rate_limit_hit(
                IP,
                "GET",
                "/api/products",
                Some("req-traced".into()),
            ));
        }
    });
    emitter.emit(completed());
    let sent = task.shutdown(Duration::from_secs(30)).await;
    assert_eq!((sent.sent, sent.dropped()), (7, 0), "{sent:?}");

    // The consumer, with its admin server.
    let admin: SocketAddr = format!("127.0.0.1:{}", nexus_testkit::free_port().unwrap())
        .parse()
        .unwrap();
    let mut config = ServiceConfig::new(&kafka.bootstrap(), &redis.url());
    config.session_timeout_ms = 6_000;
    config.admin = Some(admin);
    let service = ConsumerService::new(config.clone()).unwrap();
    let stats = service.stats();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(service.run(async {
        let _ = stopped.await;
    }));
    wait_until(&stats, 7).await;

    // /stats
    let (status, ctype, body) = http(admin, "GET", "/stats").await;
    assert_eq!(
        (status, ctype.as_str()),
        (200, "application/json"),
        "{body}"
    );
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["events_total"], 7, "{json}");
    assert_eq!(json["by_type"]["gateway.rate_limit.hit"], 6, "{json}");
    assert_eq!(json["by_type"]["gateway.request.completed"], 1, "{json}");
    assert_eq!(json["by_type"]["gateway.circuit.opened"], 0, "{json}");
    assert!(json["events_per_second"].as_f64().unwrap() > 0.0, "{json}");
    assert_eq!(json["blocked_ips"][0]["ip"], IP, "{json}");
    assert_eq!(json["blocked_ips"][0]["hits"], 5, "{json}");
    assert_eq!(json["ips_blocked_total"], 1, "{json}");
    assert_eq!(
        (
            json["alerts_total"].as_u64(),
            json["latency_spikes_total"].as_u64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        (
            json["malformed_records"].as_u64(),
            json["dropped"].as_u64(),
            json["errors"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(json["lag"], 0, "{json}");

    // /metrics: valid for promtool, and counting what was sent.
    let (status, ctype, metrics) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    nexus_testkit::promtool::check_metrics(&metrics)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{metrics}"));
    for line in [
        "nexus_consumer_events_total{type=\"gateway.rate_limit.hit\"} 6",
        "nexus_consumer_events_total{type=\"gateway.request.completed\"} 1",
        "nexus_consumer_events_total{type=\"gateway.circuit.opened\"} 0",
        "nexus_consumer_records_total 7",
        "nexus_consumer_ips_blocked_total 1",
        "nexus_consumer_active_blocks 1",
        "nexus_consumer_handler_errors_total 0",
        "nexus_consumer_alerts_total 0",
        "nexus_consumer_latency_spikes_total 0",
        "nexus_consumer_lag_records 0",
        "nexus_consumer_handle_duration_seconds_count{type=\"gateway.rate_limit.hit\"} 6",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing `{line}` in\n{metrics}"
        );
    }
    assert_eq!(http(admin, "GET", "/healthz").await.0, 200);
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    assert_eq!(http(admin, "POST", "/stats").await.0, 405);

    let _ = stop.send(());
    timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The admin server stopped with the service.
    assert!(tokio::net::TcpStream::connect(admin).await.is_err());

    // In process (no Kafka): the context captured at emit parents the span too.
    let in_process = tracing::info_span!("in-process request");
    let in_process_trace = propagation::trace_id_hex(&in_process.context()).unwrap();
    let mut event = completed();
    in_process.in_scope(|| event.trace = TraceContext::current());
    let mut handlers = Handlers::new(&config, Arc::new(Stats::default())).unwrap();
    handlers.handle(&event).await.unwrap();
    drop(in_process);

    // The independent client sees the traceparent header too.
    let read = kafka
        .client()
        .consume(TOPIC_RATE_LIMIT_HIT, 6, Duration::from_secs(60))
        .await
        .unwrap();
    for m in &read {
        let tp = m.headers.get("traceparent").cloned().flatten().unwrap();
        assert_eq!(tp, format!("00-{trace_id}-{request_span_id}-01"));
    }

    drop(request);
    assert!(
        timeout(Duration::from_secs(10), guard.shutdown())
            .await
            .unwrap()
    );
    let spans = receiver.drain_spans();
    let handled: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "consumer.handle")
        .collect();
    assert_eq!(handled.len(), 8, "7 from Kafka, 1 in process: {spans:#?}");
    assert!(handled.iter().all(|s| s.kind == SpanKind::Consumer as i32));
    let traced: Vec<_> = handled
        .iter()
        .filter(|s| attr(s, "event.type").as_deref() == Some(TOPIC_RATE_LIMIT_HIT))
        .collect();
    assert_eq!(traced.len(), 6);
    for s in &traced {
        assert_eq!(hex(&s.trace_id), trace_id, "same trace as the request");
        assert_eq!(
            hex(&s.parent_span_id),
            request_span_id,
            "child of the request span"
        );
        assert_eq!(
            attr(s, "messaging.destination.name").as_deref(),
            Some(TOPIC_RATE_LIMIT_HIT)
        );
        assert_eq!(attr(s, "messaging.system").as_deref(), Some("kafka"));
        assert!(
            attr(s, "messaging.destination.partition.id").is_some(),
            "{s:?}"
        );
        assert!(attr(s, "messaging.kafka.offset").is_some(), "{s:?}");
        assert_eq!(attr(s, "correlation_id").as_deref(), Some("req-traced"));
    }
    let offsets: std::collections::BTreeSet<_> = traced
        .iter()
        .map(|s| attr(s, "messaging.kafka.offset").unwrap())
        .collect();
    assert_eq!(
        offsets.len(),
        6,
        "one span per record (keyed: one partition): {offsets:?}"
    );
    // The completed event from Kafka had no trace context: a new root trace.
    let untraced: Vec<_> = handled
        .iter()
        .filter(|s| hex(&s.trace_id) != trace_id && hex(&s.trace_id) != in_process_trace)
        .collect();
    assert_eq!(untraced.len(), 1);
    assert!(untraced[0].parent_span_id.is_empty());
    // In process: parented on the span that was current at emit.
    assert_eq!(
        handled
            .iter()
            .filter(|s| hex(&s.trace_id) == in_process_trace)
            .count(),
        1
    );
}
