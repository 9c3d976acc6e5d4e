//! Decoding and scan-only framing of the benchmark inputs, against the
//! `redis-protocol` crate (`decode_bytes`, zero-copy, and `decode_range`,
//! offsets only) and the `redis` crate's parser, in the same groups.
//!
//! Every routine decodes all frames of its input and drops them inside the
//! timed region; building the input buffer is not timed. The `decode_view`
//! routines also read every element (string payloads as `&[u8]`, integers),
//! which the other routines do not. `floor/frames_from_known_spans` builds
//! and drops the `Frame`s the `Frame` decoders must return, from spans found
//! before timing: no decoder returning `Frame`s can be faster than it.
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
use nexus_resp::{Decoder, Frame, FrameRef, Limits, Scanner};

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
        // Offset-based view: one `Bytes` per frame plus an index reused by
        // the decoder. Every element is then read (as `&[u8]` for strings),
        // which `decode_range` below does not do.
        group.bench_function("nexus/decode_view_bytes+read", |b| {
            let mut decoder = Decoder::new(Limits::default());
            b.iter(|| {
                let mut rest = black_box(bytes.clone());
                let mut n = 0;
                while let Ok(Some(view)) = decoder.decode_view_bytes(&mut rest) {
                    black_box(read_all(view.root()));
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
        // Floor of any decoder that returns `Frame`s: build (and drop) the
        // same frames from spans found beforehand, without reading the input
        // (the input handle is cloned and dropped as in the routines above).
        let shapes = shapes(&bytes);
        group.bench_function("floor/frames_from_known_spans", |b| {
            b.iter(|| {
                let src = black_box(bytes.clone());
                for shape in black_box(&shapes) {
                    black_box(match shape {
                        Shape::Bulk(s, e) => Frame::Bulk(src.slice(s..e)),
                        Shape::Array(spans) => {
                            let mut items = Vec::with_capacity(spans.len());
                            for &(s, e) in spans {
                                items.push(Frame::Bulk(src.slice(s..e)));
                            }
                            Frame::Array(items)
                        }
                    });
                }
            })
        });
        group.bench_function("nexus/decode_view_bytesmut_incl_copy+read", |b| {
            let mut decoder = Decoder::new(Limits::default());
            let mut buf = BytesMut::with_capacity(2 * bytes.len() + 64);
            b.iter(|| {
                buf.reserve(bytes.len());
                buf.extend_from_slice(black_box(&bytes));
                let mut n = 0;
                while let Ok(Some(view)) = decoder.decode_view(&mut buf) {
                    black_box(read_all(view.root()));
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

/// Where the payloads of one frame of a benchmark input are.
enum Shape {
    Bulk(usize, usize),
    Array(Vec<(usize, usize)>),
}

/// The shapes of all frames of `input` (bulk strings and arrays of them).
fn shapes(input: &Bytes) -> Vec<Shape> {
    let base = input.as_ptr() as usize;
    let span = |b: &Bytes| {
        let s = b.as_ptr() as usize - base;
        (s, s + b.len())
    };
    let mut rest = input.clone();
    let mut decoder = Decoder::new(Limits::default());
    let mut out = Vec::new();
    while let Ok(Some(frame)) = decoder.decode_bytes(&mut rest) {
        out.push(match frame {
            Frame::Bulk(b) => {
                let (s, e) = span(&b);
                Shape::Bulk(s, e)
            }
            Frame::Array(items) => Shape::Array(
                items
                    .iter()
                    .filter_map(|f| f.as_bytes().map(span))
                    .collect(),
            ),
            other => panic!("unexpected benchmark frame {other:?}"),
        });
    }
    out
}

/// Touches every element of a view: payload lengths of strings, values of
/// integers, recursively.
fn read_all(f: FrameRef<'_>) -> usize {
    match f.as_slice() {
        Some(s) => s.len(),
        None => f.as_integer().map_or(0, |i| i as usize) + f.iter().map(read_all).sum::<usize>(),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = decode
}
criterion_main!(benches);
