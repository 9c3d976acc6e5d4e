//! Cost of the breaker on the data path.
//!
//! `cargo bench -p nexus-breaker --bench breaker`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nexus_breaker::{Breaker, BreakerConfig, Outcome};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn gate(c: &mut Criterion) {
    let rt = rt();
    let _guard = rt.enter();
    let mut g = c.benchmark_group("breaker");
    let closed = Breaker::new("b", BreakerConfig::default()).unwrap();
    g.bench_function("acquire_record_success/closed", |b| {
        b.iter(|| {
            closed
                .acquire()
                .unwrap()
                .record(black_box(Outcome::Success))
        })
    });
    g.bench_function("acquire_only/closed (dropped permit)", |b| {
        b.iter(|| drop(black_box(closed.acquire().unwrap())))
    });
    let open = Breaker::new("b", BreakerConfig::default()).unwrap();
    for _ in 0..3 {
        open.acquire().unwrap().failure();
    }
    g.bench_function("acquire/open (fail fast)", |b| {
        b.iter(|| black_box(open.acquire().is_err()))
    });
    let shared = Breaker::new("b", BreakerConfig::default()).unwrap();
    g.bench_function("acquire_record_success/closed, 2 threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let shared = shared.clone();
                    s.spawn(move || {
                        for _ in 0..iters {
                            shared.acquire().unwrap().record(Outcome::Success);
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = gate
}
criterion_main!(benches);
