//! Decoding and scan-only framing of the benchmark inputs, against the
//! `redis-protocol` crate (`decode_bytes`, zero-copy, and `decode_range`,
//! offsets only) and the `redis` crate's parser, in the same groups.
//!
//! Every routine decodes all frames of its input and drops them inside the
//! timed region; building the input buffer is not timed.
//!
//! Times are thread CPU time (see `cputime.rs`).
//!
//! ```text
//! cargo bench -p nexus-resp --bench decode -- --warm-up-time 1 --measurement-time 3
//! ```

#[path = "common/cputime.rs"]
mod cputime;
#[path = "common/inputs.rs"]
mod inputs;

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cputime::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nexus_resp::{Decoder, Limits, Scanner};

fn decode(c: &mut Criterion<ThreadCpuTime>) {
    for input in inputs::all() {
        let mut group = c.benchmark_group(format!("decode/{}", input.name));
        group.throughput(Throughput::Elements(input.elements));
        let frames = input.frames;
        let bytes = Bytes::from(input.bytes.clone());

        // (e) scan-only: frame boundaries, no Frame built.
        group.bench_function("nexus/scan", |b| {
            let mut scanner = Scanner::new(Limits::default());
            b.iter(|| {
                let mut rest = black_box(&bytes[..]);
                let mut n = 0;
                while let Ok(Some(len)) = scanner.scan(rest) {
                    rest = &rest[len..];
                    n += 1;
                }
                assert_eq!(n, frames);
            })
        });
        group.bench_function("nexus/decode_bytes", |b| {
            let mut decoder = Decoder::new(Limits::default());
            b.iter(|| {
                let mut rest = black_box(bytes.clone());
                let mut n = 0;
                while let Ok(Some(frame)) = decoder.decode_bytes(&mut rest) {
                    black_box(frame);
                    n += 1;
                }
                assert_eq!(n, frames);
            })
        });
        // Steady-state read buffer: the input is copied in (as a socket read
        // would) and decoded; the copy is timed too.
        group.bench_function("nexus/decode_bytesmut_incl_copy", |b| {
            let mut decoder = Decoder::new(Limits::default());
            let mut buf = BytesMut::with_capacity(2 * bytes.len() + 64);
            b.iter(|| {
                buf.reserve(bytes.len());
                buf.extend_from_slice(black_box(&bytes));
                let mut n = 0;
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    black_box(frame);
                    n += 1;
                }
                assert_eq!(n, frames);
            })
        });
        group.bench_function("redis-protocol/decode_bytes", |b| {
            b.iter(|| {
                let mut rest = black_box(bytes.clone());
                let mut n = 0;
                while let Ok(Some((frame, len))) =
                    redis_protocol::resp2::decode::decode_bytes(&rest)
                {
                    black_box(frame);
                    let _ = rest.split_to(len);
                    n += 1;
                }
                assert_eq!(n, frames);
            })
        });
        group.bench_function("redis-protocol/decode_range", |b| {
            b.iter(|| {
                let mut rest = black_box(&bytes[..]);
                let mut n = 0;
                while let Ok(Some((frame, len))) = redis_protocol::resp2::decode::decode_range(rest)
                {
                    black_box(frame);
                    rest = &rest[len..];
                    n += 1;
                }
                assert_eq!(n, frames);
            })
        });
        group.bench_function("redis/parse_value", |b| {
            b.iter(|| {
                let mut parser = redis::Parser::new();
                let mut reader = black_box(&bytes[..]);
                for _ in 0..frames {
                    black_box(parser.parse_value(&mut reader).ok());
                }
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = decode
}
criterion_main!(benches);
