//! An unreachable collector does not slow span creation, failures are logged
//! rate-limited (not per span), and shutdown completes within its bound.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use nexus_telemetry::{BatchSettings, TelemetryConfig, build_dispatch};
use support::Buffer;

#[tokio::test(flavor = "current_thread")]
async fn closed_port_costs_nothing_and_shuts_down_in_bound() {
    // A port that was free a moment ago: connections are refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let logs = Buffer::default();
    let cfg = TelemetryConfig::new("t")
        .otlp_endpoint(Some(format!("http://127.0.0.1:{closed}")))
        .filter("warn")
        .batch(BatchSettings {
            scheduled_delay: Duration::from_millis(20),
            export_timeout: Duration::from_millis(500),
            ..BatchSettings::default()
        });
    let (dispatch, guard) = build_dispatch(cfg, logs.clone()).unwrap();
    let _d = tracing::dispatcher::set_default(&dispatch);

    let t0 = std::time::Instant::now();
    let created = tokio::time::timeout(Duration::from_secs(20), async {
        for i in 0..10_000_u32 {
            let span = tracing::info_span!("work", otel.kind = "server", i);
            span.in_scope(|| tracing::debug!("filtered"));
            drop(span);
            if i % 500 == 0 {
                // Let the batch task run and fail a few exports meanwhile.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    })
    .await;
    assert!(
        created.is_ok(),
        "creating 10,000 spans must not block on the exporter"
    );
    eprintln!("created in {:?}", t0.elapsed());

    let started = std::time::Instant::now();
    let _clean = tokio::time::timeout(Duration::from_secs(5), guard.shutdown())
        .await
        .expect("shutdown bounded by export timeout + 1 s");
    eprintln!("shutdown in {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(3));

    let text = logs.text();
    let reports = text.matches("OTLP export failing").count();
    assert!(reports >= 1, "failures must be reported: {text}");
    assert!(
        reports <= 2,
        "failures must be rate-limited, got {reports}: {text}"
    );
}
