//! Pick latency per strategy for 2, 16 and 256 endpoints.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use nexus_lb::{Balancer, EndpointSpec, Strategy};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("pick");
    for strategy in [
        Strategy::RoundRobin,
        Strategy::LeastOutstanding,
        Strategy::WeightedRoundRobin,
        Strategy::P2cPeakEwma,
    ] {
        for n in [2usize, 16, 256] {
            let lb = Balancer::builder()
                .strategy(strategy)
                .seed(7)
                .build()
                .unwrap();
            let specs: Vec<_> = (0..n)
                .map(|i| {
                    EndpointSpec::new(
                        &format!("http://10.0.{}.{}:80", i / 250, i % 250 + 1),
                        (i % 5 + 1) as u32,
                    )
                    .unwrap()
                })
                .collect();
            lb.set_endpoints(&specs).unwrap();
            group.bench_with_input(BenchmarkId::new(strategy.as_str(), n), &n, |b, _| {
                b.iter(|| std::hint::black_box(lb.pick()))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
