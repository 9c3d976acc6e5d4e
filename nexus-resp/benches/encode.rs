//! Encoding the benchmark inputs: commands from `&[&[u8]]` and reply frames,
//! against the `redis-protocol` crate (`extend_encode`) and the `redis`
//! crate's command packing, in the same groups. The output buffer is reused.
//!
//! Times are thread CPU time (see `cputime.rs`).
//!
//! ```text
//! cargo bench -p nexus-resp --bench encode -- --warm-up-time 1 --measurement-time 3
//! ```

#[path = "common/cputime.rs"]
mod cputime;
#[path = "common/inputs.rs"]
mod inputs;

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use cputime::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nexus_resp::{Frame, encode};
use redis_protocol::resp2::types::BytesFrame;

fn commands(c: &mut Criterion<ThreadCpuTime>) {
    let cases: Vec<(&str, Vec<Vec<Vec<u8>>>)> = vec![
        (
            "a_set_command",
            vec![vec![
                b"SET".to_vec(),
                b"key:123".to_vec(),
                b"value".to_vec(),
            ]],
        ),
        (
            "a_get_command",
            vec![vec![b"GET".to_vec(), b"key:123".to_vec()]],
        ),
        ("d_pipeline_64", inputs::pipeline_args()),
    ];
    for (name, cmds) in cases {
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Elements(cmds.len() as u64));
        let slices: Vec<Vec<&[u8]>> = cmds
            .iter()
            .map(|a| a.iter().map(Vec::as_slice).collect())
            .collect();
        let mut out = BytesMut::with_capacity(1 << 16);
        group.bench_function("nexus/encode::command", |b| {
            b.iter(|| {
                out.clear();
                for args in &slices {
                    encode::command(&mut out, black_box(args));
                }
                black_box(out.len());
            })
        });
        let rp_frames: Vec<BytesFrame> = cmds
            .iter()
            .map(|a| {
                BytesFrame::Array(
                    a.iter()
                        .map(|s| BytesFrame::BulkString(Bytes::from(s.clone())))
                        .collect(),
                )
            })
            .collect();
        group.bench_function("redis-protocol/extend_encode", |b| {
            b.iter(|| {
                out.clear();
                for f in &rp_frames {
                    let _ =
                        redis_protocol::resp2::encode::extend_encode(&mut out, black_box(f), false);
                }
                black_box(out.len());
            })
        });
        group.bench_function("redis/cmd+write_packed_command", |b| {
            let mut packed = Vec::with_capacity(1 << 16);
            b.iter(|| {
                packed.clear();
                for args in &slices {
                    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap_or("GET"));
                    for a in &args[1..] {
                        cmd.arg(*a);
                    }
                    cmd.write_packed_command(&mut packed);
                }
                black_box(packed.len());
            })
        });
        group.finish();
    }
}

fn replies(c: &mut Criterion<ThreadCpuTime>) {
    let bulk16 = Bytes::from(inputs::bulk_reply(16 * 1024)[8..8 + 16 * 1024].to_vec());
    let bulk1m = Bytes::from(vec![b'x'; 1024 * 1024]);
    let values: Vec<Bytes> = inputs::array_values()
        .into_iter()
        .map(Bytes::from)
        .collect();
    let cases: Vec<(&str, Frame, BytesFrame, u64)> = vec![
        (
            "b_bulk_16KiB",
            Frame::Bulk(bulk16.clone()),
            BytesFrame::BulkString(bulk16),
            1,
        ),
        (
            "b_bulk_1MiB",
            Frame::Bulk(bulk1m.clone()),
            BytesFrame::BulkString(bulk1m),
            1,
        ),
        (
            "c_array_1000",
            Frame::Array(values.iter().cloned().map(Frame::Bulk).collect()),
            BytesFrame::Array(values.iter().cloned().map(BytesFrame::BulkString).collect()),
            1000,
        ),
    ];
    for (name, frame, rp_frame, elements) in cases {
        let mut group = c.benchmark_group(format!("encode/{name}"));
        group.throughput(Throughput::Elements(elements));
        let mut out = BytesMut::with_capacity(2 << 20);
        group.bench_function("nexus/Frame::encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&frame).encode(&mut out);
                black_box(out.len());
            })
        });
        group.bench_function("redis-protocol/extend_encode", |b| {
            b.iter(|| {
                out.clear();
                let _ = redis_protocol::resp2::encode::extend_encode(
                    &mut out,
                    black_box(&rp_frame),
                    false,
                );
                black_box(out.len());
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = commands, replies
}
criterion_main!(benches);
