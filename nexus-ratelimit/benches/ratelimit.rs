//! Rate-limit check cost, against `governor`'s keyed limiter on the same workloads.
//!
//! `cargo bench -p nexus-ratelimit --bench ratelimit`
//!
//! Quotas are large so every check is admitted in both limiters (the common
//! path); keys are `u64`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nexus_ratelimit::{
    Clock, KeyedLimiter, LimiterConfig, QuantaClock, Quota, StdClock, TokioClock,
};

const KEYS: u64 = 100_000;

fn big() -> NonZeroU32 {
    NonZeroU32::new(1_000_000_000).unwrap()
}

fn ours<C: Clock>(clock: C) -> KeyedLimiter<u64, C> {
    KeyedLimiter::with_clock(LimiterConfig::new(Quota::per_second(big(), big())), clock)
}

type Gov = governor::DefaultKeyedRateLimiter<u64>;

fn gov() -> Gov {
    governor::RateLimiter::keyed(governor::Quota::per_second(big()).allow_burst(big()))
}

/// Mixes `i` so consecutive iterations touch unrelated keys.
fn key_of(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % KEYS
}

fn one_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit/one_key");
    let q_l = ours(QuantaClock::new());
    g.bench_function("nexus/quanta_clock", |b| {
        b.iter(|| black_box(q_l.check(black_box(&7)).is_ok()))
    });
    let std_l = ours(StdClock::new());
    g.bench_function("nexus/std_clock", |b| {
        b.iter(|| black_box(std_l.check(black_box(&7)).is_ok()))
    });
    let tok_l = ours(TokioClock::new());
    g.bench_function("nexus/tokio_clock", |b| {
        b.iter(|| black_box(tok_l.check(black_box(&7)).is_ok()))
    });
    let gl = gov();
    g.bench_function("governor", |b| {
        b.iter(|| black_box(gl.check_key(black_box(&7)).is_ok()))
    });
    g.finish();
}

fn many_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit/100k_keys");
    let std_l = ours(QuantaClock::new());
    let gl = gov();
    for k in 0..KEYS {
        let _ = std_l.check(&k);
        let _ = gl.check_key(&k);
    }
    let mut i = 0u64;
    g.bench_function("nexus/quanta_clock", |b| {
        b.iter(|| {
            i += 1;
            black_box(std_l.check(&key_of(i)).is_ok())
        })
    });
    let mut i = 0u64;
    g.bench_function("governor", |b| {
        b.iter(|| {
            i += 1;
            black_box(gl.check_key(&key_of(i)).is_ok())
        })
    });
    g.finish();
}

/// Two threads hammering the same key; time is per check per thread.
fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit/two_threads_one_key");
    fn run<F: Fn() -> bool + Send + Sync + 'static>(f: Arc<F>, iters: u64) -> Duration {
        let start = Instant::now();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let f = Arc::clone(&f);
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        black_box(f());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        start.elapsed()
    }
    let l = ours(QuantaClock::new());
    g.bench_function("nexus/quanta_clock", |b| {
        let l = l.clone();
        b.iter_custom(move |iters| {
            let l = l.clone();
            run(Arc::new(move || l.check(&7).is_ok()), iters)
        })
    });
    let gl = Arc::new(gov());
    g.bench_function("governor", |b| {
        let gl = Arc::clone(&gl);
        b.iter_custom(move |iters| {
            let gl = Arc::clone(&gl);
            run(Arc::new(move || gl.check_key(&7).is_ok()), iters)
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
    targets = one_key, many_keys, contended
}
criterion_main!(benches);
