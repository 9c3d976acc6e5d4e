//! `Emitter::emit` on the request path: criterion mean, plus a p99 measured
//! call by call (criterion reports means, the target is a p99).
//!
//! ```text
//! cargo bench -p nexus-events --bench emit -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group};
use nexus_events::{DeliveryReport, Emitter, EmitterConfig, Event, EventSink, RequestCompleted};

/// Discards batches: measures the emitter, not a destination.
struct Discard;

impl EventSink for Discard {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        black_box(batch);
        DeliveryReport {
            sent: batch.len(),
            failed: 0,
        }
    }
}

fn event(i: u64) -> Event {
    Event::request_completed(
        RequestCompleted {
            method: "GET".into(),
            url: "/api/products?page=2".into(),
            status_code: 200,
            latency_ms: 4.2,
            client_id: "gateway-client".into(),
        },
        Some(format!("req-{i}")),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (emitter, _task) =
        rt.block_on(async { Emitter::spawn(Discard, EmitterConfig::default()).expect("emitter") });
    let mut i = 0;
    c.bench_function("emit (queue draining)", |b| {
        b.iter_batched(
            || {
                i += 1;
                event(i)
            },
            |e| emitter.emit(e),
            BatchSize::SmallInput,
        )
    });

    // A full queue: the drop path must be as cheap as the accept path.
    let (full, _task2) = rt.block_on(async {
        struct Stuck;
        impl EventSink for Stuck {
            async fn deliver(&mut self, _: &[Event]) -> DeliveryReport {
                std::future::pending().await
            }
        }
        let config = EmitterConfig {
            capacity: 1,
            ..EmitterConfig::default()
        };
        Emitter::spawn(Stuck, config).expect("emitter")
    });
    c.bench_function("emit (queue full, dropped)", |b| {
        b.iter_batched(|| event(0), |e| full.emit(e), BatchSize::SmallInput)
    });

    // Trace context capture (`emit` reads the current span). With the
    // telemetry subscriber installed but no span entered (tracing off for this
    // request), then inside a sampled span (the context is captured).
    let (dispatch, _guard) = nexus_telemetry::build_dispatch(
        nexus_telemetry::TelemetryConfig::new("bench"),
        std::io::sink,
    )
    .expect("dispatch");
    tracing::dispatcher::with_default(&dispatch, || {
        c.bench_function("emit (telemetry installed, no span)", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    event(i)
                },
                |e| emitter.emit(e),
                BatchSize::SmallInput,
            )
        });
        let span = tracing::info_span!("request", otel.kind = "server");
        let _entered = span.enter();
        c.bench_function("emit (inside a sampled span, context captured)", |b| {
            b.iter_batched(
                || {
                    i += 1;
                    event(i)
                },
                |e| emitter.emit(e),
                BatchSize::SmallInput,
            )
        });
        let mut traced = event(9);
        traced.trace = nexus_events::TraceContext::current();
        assert!(traced.trace.is_some());
        c.bench_function(
            "KafkaSink::record with traceparent (background cost)",
            |b| b.iter(|| black_box(nexus_events::KafkaSink::record(&traced))),
        );
    });
    c.bench_function("KafkaSink::record without trace (background cost)", |b| {
        let e = event(9);
        b.iter(|| black_box(nexus_events::KafkaSink::record(&e)))
    });

    c.bench_function("Event::to_json (background cost)", |b| {
        let e = event(7);
        let mut buf = Vec::with_capacity(256);
        b.iter(|| {
            buf.clear();
            e.encode_into(&mut buf);
            black_box(buf.len())
        })
    });
}

/// Times 200,000 single calls in bursts of 1,000 (with pauses that let the
/// background task drain, as between real requests) and prints percentiles.
fn percentiles() {
    let rt = runtime();
    let (emitter, _task) =
        rt.block_on(async { Emitter::spawn(Discard, EmitterConfig::default()).expect("emitter") });
    let mut samples = Vec::with_capacity(200_000);
    for burst in 0..200u64 {
        let events: Vec<Event> = (0..1_000).map(|i| event(burst * 1_000 + i)).collect();
        for e in events {
            let t = Instant::now();
            emitter.emit(e);
            samples.push(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    let stats = emitter.stats();
    println!(
        "emit per-call latency over {} calls: p50 {:?}  p99 {:?}  p99.9 {:?}  max {:?}  (dropped {})",
        samples.len(),
        p(0.50),
        p(0.99),
        p(0.999),
        samples[samples.len() - 1],
        stats.dropped()
    );
}

criterion_group!(benches, bench);

fn main() {
    percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
