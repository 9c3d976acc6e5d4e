//! Singleflight overhead.
//!
//! `cargo bench -p nexus-cache --bench singleflight -- --warm-up-time 1 --measurement-time 3`
//!
//! - `uncontended/*`: one caller at a time (the common case): the cost of
//!   `Group::run` over awaiting the closure's future directly, and the same
//!   through the `async_singleflight` crate for comparison.
//! - `waiters_1000/*`: 1,000 callers of one key at once; one runs, 999 wait.
//!
//! Times are CPU time of the benchmark thread (see `cpu::ThreadCpu`): the
//! two cores are shared with other builds, and wall time would count their
//! turns on the CPU too.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::future::join_all;
use nexus_cache::singleflight::Group;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

/// Runs `iters` sequential calls inside one `block_on`, so runtime entry
/// is not part of the measurement.
fn timed<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut call: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    rt.block_on(async {
        let start = cpu::now();
        for i in 0..iters {
            black_box(call(i).await);
        }
        Duration::from_nanos(cpu::now() - start)
    })
}

fn uncontended(c: &mut Criterion<cpu::ThreadCpu>) {
    let rt = runtime();
    let mut g = c.benchmark_group("uncontended");
    g.bench_function("direct_closure", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| async move {
                let work = || async move { black_box(i) };
                work().await
            })
        })
    });
    let group: Group<u64, u64> = Group::new();
    g.bench_function("nexus_group_u64_key", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| {
                let group = &group;
                async move {
                    match group.run(i & 1023, || async move { black_box(i) }).await {
                        Ok(out) => out.value,
                        Err(_) => 0,
                    }
                }
            })
        })
    });
    let group: Group<bytes::Bytes, u64> = Group::new();
    let key = bytes::Bytes::from_static(b"GET product:12345");
    g.bench_function("nexus_group_bytes_key", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| {
                let (group, key) = (&group, key.clone());
                async move {
                    match group.run(key, || async move { black_box(i) }).await {
                        Ok(out) => out.value,
                        Err(_) => 0,
                    }
                }
            })
        })
    });
    let theirs: async_singleflight::UnaryGroup<u64, u64> = async_singleflight::UnaryGroup::new();
    g.bench_function("async_singleflight_u64_key", |b| {
        b.iter_custom(|iters| {
            timed(&rt, iters, |i| {
                let theirs = &theirs;
                async move { theirs.work(&(i & 1023), async move { black_box(i) }).await }
            })
        })
    });
    g.finish();
}

fn waiters(c: &mut Criterion<cpu::ThreadCpu>) {
    let rt = runtime();
    let mut g = c.benchmark_group("waiters_1000");
    g.sample_size(20);
    let group: Group<u64, u64> = Group::new();
    g.bench_function("nexus_group", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls = (0..1000u64).map(|_| {
                    group.run(7, || async {
                        // Still in flight when the other 999 arrive.
                        tokio::task::yield_now().await;
                        42u64
                    })
                });
                let outs = join_all(calls).await;
                assert!(outs.iter().all(|o| o.as_ref().is_ok_and(|o| o.value == 42)));
                black_box(outs.len())
            })
        })
    });
    let theirs: async_singleflight::UnaryGroup<u64, u64> = async_singleflight::UnaryGroup::new();
    g.bench_function("async_singleflight", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls = (0..1000u64).map(|_| {
                    theirs.work(&7, async {
                        tokio::task::yield_now().await;
                        42u64
                    })
                });
                let outs = join_all(calls).await;
                assert!(outs.iter().all(|o| *o == 42));
                black_box(outs.len())
            })
        })
    });
    g.bench_function("join_all_baseline_no_singleflight", |b| {
        b.iter(|| {
            rt.block_on(async {
                let calls = (0..1000u64).map(|_| async {
                    tokio::task::yield_now().await;
                    42u64
                });
                black_box(join_all(calls).await.len())
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(cpu::ThreadCpu);
    targets = uncontended, waiters
}
criterion_main!(benches);

#[path = "common/cpu.rs"]
mod cpu;
