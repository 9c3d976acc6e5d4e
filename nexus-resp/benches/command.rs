//! Framing and parsing the commands of a client pipeline, as the proxy's
//! reader does for every command: the scanner then `Command::parse` (two
//! passes) against `Command::parse_prefix` (one). The input is 16
//! `GET key:000000012345` commands, `redis-benchmark -P 16`'s shape.
//!
//! Times are thread CPU time (see `cputime.rs`).
//!
//! ```text
//! cargo bench -p nexus-resp --bench command -- --warm-up-time 1 --measurement-time 3
//! ```

#[path = "common/cputime.rs"]
mod cputime;

use std::hint::black_box;

use cputime::ThreadCpuTime;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nexus_resp::{Command, Limits, Scanner, encode};

/// Reads what a reader needs of each command: its name and first key.
fn touch(cmd: &Command<'_>) -> usize {
    cmd.name().len() + cmd.arg(1).map_or(0, <[u8]>::len)
}

fn pipeline(c: &mut Criterion<ThreadCpuTime>) {
    let mut buf = Vec::new();
    for i in 0..16 {
        let key = format!("key:{:012}", 12_345 + i);
        encode::command(&mut buf, &[b"GET", key.as_bytes()]);
    }
    let limits = Limits::default();
    let mut group = c.benchmark_group("command/get_p16");
    group.throughput(Throughput::Elements(16));
    group.bench_function("scan+parse", |b| {
        let mut scanner = Scanner::new(limits);
        b.iter(|| {
            let buf = black_box(&buf[..]);
            let (mut off, mut sum) = (0, 0);
            while let Ok(Some(n)) = scanner.scan(&buf[off..]) {
                if let Ok(cmd) = Command::parse(&buf[off..off + n]) {
                    sum += touch(black_box(&cmd));
                }
                off += n;
            }
            sum
        });
    });
    group.bench_function("parse_prefix", |b| {
        b.iter(|| {
            let buf = black_box(&buf[..]);
            let (mut off, mut sum) = (0, 0);
            while let Some((cmd, n)) = Command::parse_prefix(&buf[off..], &limits) {
                sum += touch(black_box(&cmd));
                off += n;
            }
            sum
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = pipeline
}
criterion_main!(benches);
