//! Cost per request of `ServerTraceLayer` (span creation, traceparent
//! extraction, status recording, span end) under each telemetry setting.
//!
//! The wrapped service is ready immediately and the future is polled once
//! with a no-op waker, so the numbers are the layer's own cost. The batch
//! processor runs on a separate 1-worker tokio runtime, as in a binary.
//!
//! `cargo bench -p nexus-telemetry --bench server_layer -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use nexus_telemetry::layer::{RouteTemplate, ServerTraceLayer};
use nexus_telemetry::{BatchSettings, TelemetryConfig, build_dispatch};
use tower::{Layer, Service};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn request(traceparent: bool) -> Request<()> {
    let mut b = Request::get("/api/products/7");
    if traceparent {
        b = b.header("traceparent", TP);
    }
    let mut req = b.body(()).unwrap();
    req.extensions_mut()
        .insert(RouteTemplate::from_static("/api/products/{id}"));
    req
}

fn poll_once<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("service must be ready immediately"),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let batch = BatchSettings {
        export_timeout: Duration::from_millis(500),
        ..BatchSettings::default()
    };

    let mut group = c.benchmark_group("server_layer");
    let mut inner =
        tower::service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    group.bench_function("no_layer", |b| {
        b.iter(|| poll_once(inner.call(request(true))).unwrap())
    });

    // Requests with a sampled `traceparent` are traced whatever the ratio
    // (parent-based); the sampling-0 case therefore sends none.
    let cases = [
        ("exporter_off", None, 1.0, true),
        ("exporter_unreachable", Some(closed.clone()), 1.0, true),
        (
            "exporter_unreachable_new_trace",
            Some(closed.clone()),
            1.0,
            false,
        ),
        ("sampling_0_unreachable_new_trace", Some(closed), 0.0, false),
    ];
    for (name, endpoint, ratio, tp) in cases {
        let cfg = TelemetryConfig::new("bench")
            .filter("warn")
            .otlp_endpoint(endpoint)
            .sampling_ratio(ratio)
            .batch(batch);
        let (dispatch, guard) = build_dispatch(cfg, std::io::sink).unwrap();
        let mut svc = ServerTraceLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function(name, |b| {
                b.iter(|| poll_once(svc.call(request(tp))).unwrap())
            });
        });
        drop(guard);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
