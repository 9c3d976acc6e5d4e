//! Hot-key detector cost per observation, and its memory.
//!
//! `cargo bench -p nexus-cache --bench hotkeys -- --warm-up-time 1 --measurement-time 3`
//!
//! - `observe/zipf_1.1_100k_keys_from_buffer`: a Zipf(1.1) stream over
//!   100,000 keys laid out in one buffer, as a proxy reads them (the workload
//!   the detector is for: a few keys take most accesses);
//! - `observe/zipf_1.1_100k_keys_scattered`: the same keys in separate heap
//!   allocations (adds the cache misses of fetching each key);
//! - `observe/distinct_keys`: every key new (the sketch's worst case);
//! - `observe/two_threads_zipf`: both cores observing at once (contention on
//!   the shard locks).
//!
//! The memory bound and use are printed before the runs. Single-thread times
//! are CPU time of the benchmark thread (the cores are shared with other
//! builds); the two-thread run is wall time.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nexus_cache::hotkeys::{HotKeys, HotKeysConfig};

/// splitmix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 2^20 key indices drawn from Zipf(s) over `n` keys.
fn zipf_stream(n: usize, s: f64, seed: u64) -> Vec<u32> {
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for k in 1..=n {
        acc += (k as f64).powf(-s);
        cdf.push(acc);
    }
    let mut state = seed;
    (0..1 << 20)
        .map(|_| {
            let u = (next(&mut state) >> 11) as f64 / (1u64 << 53) as f64 * acc;
            cdf.partition_point(|c| *c < u) as u32
        })
        .collect()
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("product:{i}").into_bytes())
        .collect()
}

fn detector() -> HotKeys {
    HotKeys::new(HotKeysConfig {
        window: Duration::from_secs(3600),
        seed: Some(1),
        ..HotKeysConfig::default()
    })
}

fn observe(c: &mut Criterion<cpu::ThreadCpu>) {
    let keys = keys(100_000);
    let stream = zipf_stream(keys.len(), 1.1, 42);
    let hot = detector();
    println!(
        "hotkeys memory: bound {} bytes, in use after construction {} bytes",
        hot.memory_bound(),
        hot.memory_bytes()
    );

    let mut g = c.benchmark_group("observe");
    g.throughput(Throughput::Elements(1));

    // Keys laid out one after another, as a proxy finds them in its read
    // buffer (in cache), in Zipf order.
    let mut flat = Vec::new();
    let mut offsets = vec![0usize];
    for &ix in &stream {
        flat.extend_from_slice(&keys[ix as usize]);
        offsets.push(flat.len());
    }
    let seq = detector();
    let mut j = 0usize;
    g.bench_function("zipf_1.1_100k_keys_from_buffer", |b| {
        b.iter(|| {
            let at = j & (stream.len() - 1);
            j = j.wrapping_add(1);
            seq.observe(black_box(&flat[offsets[at]..offsets[at + 1]]));
        })
    });

    // The same with `observe_due` as the proxy calls it for a `hot` rule
    // with threshold 1,000 (one access in 62 of a listed key is due).
    let due = detector();
    let mut j = 0usize;
    g.bench_function("zipf_1.1_100k_keys_from_buffer_due_every_62", |b| {
        b.iter(|| {
            let at = j & (stream.len() - 1);
            j = j.wrapping_add(1);
            due.observe_due(black_box(&flat[offsets[at]..offsets[at + 1]]), 62)
        })
    });

    // One key, again and again: `benches/load/proxy.py`'s `GET` workload.
    let one = detector();
    g.bench_function("one_key_due_every_62", |b| {
        b.iter(|| one.observe_due(black_box(b"key:__rand_int__"), 62))
    });

    // The same keys fetched from 100,000 separate heap allocations: adds
    // the cache misses of reaching each key's bytes.
    let mut i = 0usize;
    g.bench_function("zipf_1.1_100k_keys_scattered", |b| {
        b.iter(|| {
            let k = &keys[stream[i & (stream.len() - 1)] as usize];
            i = i.wrapping_add(1);
            hot.observe(black_box(k));
        })
    });
    println!(
        "hotkeys memory after the Zipf run: {} bytes in use, {} keys listed",
        hot.memory_bytes(),
        hot.tracked_keys()
    );

    let fresh = detector();
    let mut n = 0u64;
    let mut buf = Vec::with_capacity(32);
    g.bench_function("distinct_keys", |b| {
        b.iter(|| {
            buf.clear();
            let _ = write!(buf, "user:{n}:profile");
            n += 1;
            fresh.observe(black_box(&buf));
        })
    });
    println!(
        "hotkeys memory after {n} distinct keys: {} bytes in use (bound {})",
        fresh.memory_bytes(),
        fresh.memory_bound()
    );

    let shared = Arc::new(detector());
    let (keys, stream) = (Arc::new(keys), Arc::new(stream));
    g.bench_function("two_threads_zipf", |b| {
        // Wall time here: two threads run at once.
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let (hot, keys, stream) = (&shared, &keys, &stream);
                    s.spawn(move || {
                        for j in 0..iters / 2 {
                            let idx = (j.wrapping_mul(2) + t) as usize & (stream.len() - 1);
                            hot.observe(&keys[stream[idx] as usize]);
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
    config = Criterion::default().with_measurement(cpu::ThreadCpu);
    targets = observe
}
criterion_main!(benches);

#[path = "common/cpu.rs"]
mod cpu;
