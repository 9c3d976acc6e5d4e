//! Proxy metrics: a registry of atomics, cheap to update on the hot path
//! (relaxed increments, no locks) and read as a [`MetricsSnapshot`] by
//! `NEXUS.STATS` or by an exporter (Prometheus, OpenTelemetry) later.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// Number of latency buckets: bucket `i` counts samples below `2^i` microseconds
/// (the last one collects everything above about 16 s).
const BUCKETS: usize = 25;

/// A fixed-size log2 histogram of durations (microsecond resolution).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[idx].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Upper bound (microseconds) of the bucket holding quantile `q` (0.0..=1.0).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        // Rank of the sample at quantile q, 1-based.
        let rank = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }
}

/// Counters and gauges of one proxy instance (no global state: two proxies in one
/// process have two registries).
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) commands: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) answered_locally: AtomicU64,
    pub(crate) proxy_errors: AtomicU64,
    pub(crate) upstream_error_replies: AtomicU64,
    pub(crate) upstream_failed_commands: AtomicU64,
    pub(crate) connected_clients: AtomicU64,
    pub(crate) total_connections: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) pinned_clients: AtomicU64,
    pub(crate) upstream_connects: AtomicU64,
    pub(crate) upstream_connect_failures: AtomicU64,
    pub(crate) upstream_batches: AtomicU64,
    pub(crate) upstream_latency: Histogram,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Commands received from clients.
    pub commands: u64,
    /// Commands forwarded over the shared pool.
    pub forwarded: u64,
    /// Commands answered by the proxy itself (PING is forwarded; QUIT, AUTH, NEXUS.* are not).
    pub answered_locally: u64,
    /// Error replies the proxy generated (refused commands, limits, protocol errors, failures).
    pub proxy_errors: u64,
    /// Error replies Redis sent on the shared pool (passed through verbatim).
    pub upstream_error_replies: u64,
    /// Commands answered `-ERR upstream ...` because Redis was unreachable or the connection died.
    pub upstream_failed_commands: u64,
    /// Clients connected now.
    pub connected_clients: u64,
    /// Client connections accepted since start.
    pub total_connections: u64,
    /// Client connections refused (max clients) since start.
    pub rejected_connections: u64,
    /// Clients holding a pinned upstream connection now.
    pub pinned_clients: u64,
    /// Successful upstream connects (pool and pinned).
    pub upstream_connects: u64,
    /// Failed upstream connect attempts.
    pub upstream_connect_failures: u64,
    /// Batches sent over the pool (one per group of pipelined commands).
    pub upstream_batches: u64,
    /// Median batch round trip to Redis, upper bucket bound in microseconds.
    pub upstream_latency_p50_us: u64,
    /// 99th percentile batch round trip to Redis, upper bucket bound in microseconds.
    pub upstream_latency_p99_us: u64,
}

impl Metrics {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads all values.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            commands: self.commands.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            answered_locally: self.answered_locally.load(Relaxed),
            proxy_errors: self.proxy_errors.load(Relaxed),
            upstream_error_replies: self.upstream_error_replies.load(Relaxed),
            upstream_failed_commands: self.upstream_failed_commands.load(Relaxed),
            connected_clients: self.connected_clients.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
            rejected_connections: self.rejected_connections.load(Relaxed),
            pinned_clients: self.pinned_clients.load(Relaxed),
            upstream_connects: self.upstream_connects.load(Relaxed),
            upstream_connect_failures: self.upstream_connect_failures.load(Relaxed),
            upstream_batches: self.upstream_batches.load(Relaxed),
            upstream_latency_p50_us: self.upstream_latency.quantile_us(0.5),
            upstream_latency_p99_us: self.upstream_latency.quantile_us(0.99),
        }
    }

    /// The upstream latency histogram.
    pub fn upstream_latency(&self) -> &Histogram {
        &self.upstream_latency
    }
}

impl MetricsSnapshot {
    /// `(name, value)` pairs in a stable order, as `NEXUS.STATS` lists them.
    pub fn entries(&self) -> [(&'static str, u64); 15] {
        [
            ("commands", self.commands),
            ("forwarded", self.forwarded),
            ("answered_locally", self.answered_locally),
            ("proxy_errors", self.proxy_errors),
            ("upstream_error_replies", self.upstream_error_replies),
            ("upstream_failed_commands", self.upstream_failed_commands),
            ("connected_clients", self.connected_clients),
            ("total_connections", self.total_connections),
            ("rejected_connections", self.rejected_connections),
            ("pinned_clients", self.pinned_clients),
            ("upstream_connects", self.upstream_connects),
            ("upstream_connect_failures", self.upstream_connect_failures),
            ("upstream_batches", self.upstream_batches),
            ("upstream_latency_p50_us", self.upstream_latency_p50_us),
            ("upstream_latency_p99_us", self.upstream_latency_p99_us),
        ]
    }

    /// RESP2 flat array `name, value, name, value, ...` (bulk strings and integers),
    /// readable by every client and by `redis-cli`.
    pub fn to_resp(&self) -> Bytes {
        let entries = self.entries();
        let mut out = BytesMut::with_capacity(64 * entries.len());
        out.put_slice(format!("*{}\r\n", entries.len() * 2).as_bytes());
        for (name, value) in entries {
            out.put_slice(format!("${}\r\n{name}\r\n:{value}\r\n", name.len()).as_bytes());
        }
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_follow_samples() {
        let h = Histogram::default();
        assert_eq!(h.quantile_us(0.99), 0);
        for _ in 0..99 {
            h.record(Duration::from_micros(100));
        }
        h.record(Duration::from_millis(50));
        assert_eq!(h.quantile_us(0.5), 128);
        assert_eq!(h.quantile_us(0.99), 128);
        assert_eq!(h.quantile_us(1.0), 65_536);
    }

    #[test]
    fn stats_reply_is_a_flat_array() {
        let m = Metrics::new();
        m.commands.fetch_add(3, Relaxed);
        let resp = m.snapshot().to_resp();
        assert!(resp.starts_with(b"*30\r\n$8\r\ncommands\r\n:3\r\n"));
    }
}
