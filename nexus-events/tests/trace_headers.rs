//! Trace context travels in Kafka record headers: an event emitted inside a
//! span is produced with that span's W3C `traceparent`, read back by an
//! independent client (confluent-kafka) and by our group consumer; an event
//! emitted outside any span carries no trace header. Real broker (Tansu).
#![allow(clippy::unwrap_used)]
#![cfg(feature = "trace-context")]

use std::time::Duration;

use nexus_events::kafka::{Acks, ConsumerConfig, GroupConsumer, ProducerConfig};
use nexus_events::{Emitter, EmitterConfig, Event, KafkaSink, TOPIC_RATE_LIMIT_HIT, TraceContext};
use nexus_telemetry::{OpenTelemetrySpanExt as _, TelemetryConfig, build_dispatch, propagation};
use nexus_testkit::KafkaBroker;
use tokio::time::{Instant, timeout};

/// `traceparent` = `00-<trace id>-<span id>-<flags>`.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

// Current-thread runtime: the scoped dispatch applies to every task here.
#[tokio::test(flavor = "current_thread")]
async fn traceparent_of_the_emitting_span_is_in_the_record_headers() {
    let (dispatch, guard) =
        build_dispatch(TelemetryConfig::new("nexus-events-test"), std::io::sink).unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let kafka = KafkaBroker::start().await.unwrap();
    let mut config = ProducerConfig::new(&kafka.bootstrap());
    config.acks = Acks::All;
    let (emitter, task) =
        Emitter::spawn(KafkaSink::new(config).unwrap(), EmitterConfig::default()).unwrap();

    // Inside a request span: the context is captured by `emit` itself.
    let span = tracing::info_span!("request", otel.kind = "server");
    let cx = span.context();
    let (want_trace, want_span) = (
        propagation::trace_id_hex(&cx).unwrap(),
        propagation::span_id_hex(&cx).unwrap(),
    );
    span.in_scope(|| {
        assert!(TraceContext::current().is_some());
        emitter.emit(Event::rate_limit_hit(
            "10.0.0.1",
            "GET",
            "/traced",
            Some("req-traced".into()),
        ));
    });
    // Outside any span: no trace context, no header.
    assert!(TraceContext::current().is_none());
    emitter.emit(Event::rate_limit_hit(
        "10.0.0.2",
        "GET",
        "/untraced",
        Some("req-untraced".into()),
    ));

    let stats = task.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats.sent, stats.dropped()), (2, 0), "{stats:?}");

    // The independent client sees the header, with our span's ids.
    let read = kafka
        .client()
        .consume(TOPIC_RATE_LIMIT_HIT, 2, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(read.len(), 2);
    for m in &read {
        let key = m.key.as_deref().unwrap();
        let tp = m.headers.get("traceparent").cloned().flatten();
        match key {
            "req-traced" => {
                let tp = tp.unwrap_or_else(|| panic!("no traceparent: {m:?}"));
                assert_eq!(ids(&tp), (want_trace.clone(), want_span.clone()));
                assert!(tp.ends_with("-01"), "sampled flag: {tp}");
                // The JSON payload is unchanged: no trace fields in it.
                assert!(
                    !m.value.as_deref().unwrap().contains("traceparent"),
                    "{m:?}"
                );
            }
            "req-untraced" => assert_eq!(tp, None, "{m:?}"),
            other => panic!("unexpected key {other}"),
        }
    }

    // Our consumer reads the headers back into a TraceContext.
    let mut c = ConsumerConfig::new(&kafka.bootstrap(), "trace-test", &[TOPIC_RATE_LIMIT_HIT]);
    c.session_timeout = Duration::from_secs(6);
    c.rebalance_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(500);
    let mut consumer = timeout(Duration::from_secs(30), GroupConsumer::join(c))
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        got.extend(
            timeout(Duration::from_secs(20), consumer.poll())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(got.len(), 2);
    assert_eq!(consumer.lag(), Some(0));
    for r in &got {
        let tc = TraceContext::from_record_headers(r.header_pairs());
        if r.key.as_deref() == Some(&b"req-traced"[..]) {
            let tc = tc.unwrap();
            assert_eq!(
                (tc.trace_id(), tc.span_id()),
                (want_trace.clone(), want_span.clone())
            );
            assert!(r.header("traceparent").is_some());
        } else {
            assert!(tc.is_none() && r.headers.is_empty(), "{r:?}");
        }
    }
    consumer.close().await.unwrap();
    drop(_default);
    guard.shutdown().await;
}
