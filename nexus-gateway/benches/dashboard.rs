//! What the dashboard's bookkeeping adds to every request.
//!
//! `Metrics::record_request` runs once per request (Prometheus counter and
//! histogram, plus the dashboard's windowed recorder); `RecentRequests::record`
//! is the recorder alone, i.e. the cost the dashboard added.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/targets/dashboard cargo bench -p nexus-gateway --bench dashboard -- \
//!     --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{Criterion, criterion_group, criterion_main};
use nexus_gateway::admin::{RecentRequests, TopOffenders};
use nexus_gateway::metrics::Metrics;

fn record(c: &mut Criterion) {
    let recent = RecentRequests::new();
    c.bench_function("recent_requests_record", |b| {
        b.iter(|| recent.record(black_box(200), black_box(3.2)))
    });
    let metrics = Metrics::new();
    let get = http::Method::GET;
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| metrics.record_request(&get, "/api/*", black_box(200), black_box(3.2)))
    });
    let offenders = TopOffenders::new();
    let ips: Vec<IpAddr> = (0..256u32).map(|i| IpAddr::from(i.to_be_bytes())).collect();
    let mut i = 0;
    c.bench_function("top_offenders_record_scan", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            offenders.record(black_box(ips[i]));
        })
    });
    c.bench_function("recent_requests_summary", |b| {
        b.iter(|| black_box(recent.summary()))
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
