//! Pick latency per strategy for 2, 16 and 256 endpoints.
//!
//! Two measurements of the same benchmarks: criterion's wall time, and the
//! bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID` through `cpu-time`),
//! which leaves out the time the thread spends descheduled on a shared,
//! overloaded machine.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nexus_lb::{Balancer, EndpointSpec, Strategy};

/// The bench thread's CPU time, in nanoseconds.
struct ThreadCpu;

struct Nanos;

impl ValueFormatter for Nanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e3, "µs")
        } else {
            (1e6, "ms")
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }

    fn scale_throughputs(&self, _: f64, _: &Throughput, _: &mut [f64]) -> &'static str {
        "ns"
    }

    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = u64;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }

    fn end(&self, i: Self::Intermediate) -> u64 {
        u64::try_from(i.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

const STRATEGIES: [Strategy; 4] = [
    Strategy::RoundRobin,
    Strategy::LeastOutstanding,
    Strategy::WeightedRoundRobin,
    Strategy::P2cPeakEwma,
];

fn balancer(strategy: Strategy, n: usize) -> Balancer {
    let lb = Balancer::builder()
        .strategy(strategy)
        .seed(7)
        .build()
        .unwrap();
    let specs: Vec<_> = (0..n)
        .map(|i| {
            let url = format!("http://10.0.{}.{}:80", i / 250, i % 250 + 1);
            EndpointSpec::new(&url, (i % 5 + 1) as u32).unwrap()
        })
        .collect();
    lb.set_endpoints(&specs).unwrap();
    lb
}

fn picks<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut g = c.benchmark_group(group);
    for strategy in STRATEGIES {
        for n in [2usize, 16, 256] {
            let lb = balancer(strategy, n);
            g.bench_with_input(BenchmarkId::new(strategy.as_str(), n), &n, |b, _| {
                b.iter(|| std::hint::black_box(lb.pick()))
            });
        }
    }
    g.finish();
}

fn wall(c: &mut Criterion) {
    picks(c, "pick");

    // Baselines: what a P2C pick would pay for reading the clock per pick
    // (tokio's `Instant::now`; with the `test-util` feature that
    // dev-dependencies turn on, it also checks for a paused clock) and for
    // one `exp`.
    let mut base = c.benchmark_group("baseline");
    base.bench_function("tokio_instant_now", |b| {
        b.iter(|| std::hint::black_box(tokio::time::Instant::now()))
    });
    base.bench_function("std_instant_now", |b| {
        b.iter(|| std::hint::black_box(std::time::Instant::now()))
    });
    let mut x = 0.5f32;
    base.bench_function("f32_exp", |b| {
        b.iter(|| {
            x = std::hint::black_box(x);
            std::hint::black_box((-x).exp())
        })
    });
    base.finish();
}

fn cpu(c: &mut Criterion<ThreadCpu>) {
    picks(c, "pick_cpu");
}

criterion_group!(wall_benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(wall_benches, cpu_benches);
