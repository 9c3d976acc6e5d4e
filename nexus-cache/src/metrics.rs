//! Proxy metrics: a registry of atomics, cheap to update on the hot path
//! (relaxed increments, no locks) and read as a [`MetricsSnapshot`] by
//! `NEXUS.STATS` or by an exporter (Prometheus, OpenTelemetry) later.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// Number of latency buckets: bucket `i` counts samples below `2^i` microseconds
/// (the last one collects everything above about 16 s).
const BUCKETS: usize = 25;

/// The seed's histogram bucket bounds in milliseconds (Prometheus `le`
/// values of `nexus_*_duration_ms`); samples above the last go to `+Inf`.
pub const SEED_BUCKETS_MS: [u64; 10] = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000];

/// A fixed-size histogram of durations: log2 buckets at microsecond
/// resolution (for quantiles) plus the seed's millisecond buckets (for the
/// Prometheus export), updated together by [`record`](Self::record).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    /// Non-cumulative counts per [`SEED_BUCKETS_MS`] bound, then `+Inf`.
    seed: [AtomicU64; SEED_BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            seed: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy of a [`Histogram`] in the seed's buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedBuckets {
    /// Samples at or below each [`SEED_BUCKETS_MS`] bound, not cumulative;
    /// the last entry counts the samples above the last bound.
    pub counts: [u64; SEED_BUCKETS_MS.len() + 1],
    /// Number of samples.
    pub count: u64,
    /// Sum of the samples in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[idx].fetch_add(1, Relaxed);
        // `le` semantics: a sample of exactly 1 ms belongs to the 1 ms bucket.
        let seed = SEED_BUCKETS_MS
            .iter()
            .position(|&ms| us <= ms * 1000)
            .unwrap_or(SEED_BUCKETS_MS.len());
        self.seed[seed].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// The samples in the seed's millisecond buckets (for a Prometheus
    /// histogram). The loads are independent: `count` may differ from the sum
    /// of `counts` by samples recorded meanwhile.
    pub fn seed_buckets(&self) -> SeedBuckets {
        SeedBuckets {
            counts: std::array::from_fn(|i| self.seed[i].load(Relaxed)),
            count: self.count.load(Relaxed),
            sum_us: self.sum_us.load(Relaxed),
        }
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
    pub(crate) routed_to_pool: AtomicU64,
    pub(crate) pinned_commands: AtomicU64,
    pub(crate) local_commands: AtomicU64,
    pub(crate) get_hits: AtomicU64,
    pub(crate) get_misses: AtomicU64,
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
    /// Commands routed to the shared pool on unpinned connections (included
    /// in `commands`), counted when routed: `GET`s collapsed into another
    /// client's flight or held by the stampede guard are included, though
    /// they never reach Redis themselves (`forwarded` counts what was sent).
    pub routed_to_pool: u64,
    /// Commands received on pinned connections, the one that pinned the
    /// connection included (in `commands` too).
    pub pinned_commands: u64,
    /// Commands answered or refused by the proxy itself on unpinned
    /// connections (`AUTH`, `QUIT`, `NEXUS.*`, refusals, a pin refused at
    /// `max_pinned`; included in `commands`). On unpinned connections every
    /// command is exactly one of `routed_to_pool`, `local_commands`, or the
    /// command that pinned it (in `pinned_commands`).
    pub local_commands: u64,
    /// `GET` replies carrying a value (unpinned connections).
    pub get_hits: u64,
    /// `GET` replies that were nil: the key did not exist (unpinned connections).
    pub get_misses: u64,
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
            routed_to_pool: self.routed_to_pool.load(Relaxed),
            pinned_commands: self.pinned_commands.load(Relaxed),
            local_commands: self.local_commands.load(Relaxed),
            get_hits: self.get_hits.load(Relaxed),
            get_misses: self.get_misses.load(Relaxed),
        }
    }

    /// The upstream latency histogram.
    pub fn upstream_latency(&self) -> &Histogram {
        &self.upstream_latency
    }
}

impl MetricsSnapshot {
    /// `(name, value)` pairs in a stable order, as `NEXUS.STATS` lists them.
    pub fn entries(&self) -> [(&'static str, u64); 20] {
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
            ("pinned_commands", self.pinned_commands),
            ("local_commands", self.local_commands),
            ("get_hits", self.get_hits),
            ("get_misses", self.get_misses),
            ("routed_to_pool", self.routed_to_pool),
        ]
    }

    /// `get_hits / (get_hits + get_misses)`, `None` before the first `GET`.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.get_hits + self.get_misses;
        (total > 0).then(|| self.get_hits as f64 / total as f64)
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
        let seed = h.seed_buckets();
        assert_eq!(seed.counts[0], 99, "100 µs is under 1 ms");
        assert_eq!(seed.counts[4], 1, "50 ms is in the `le=50` bucket");
        assert_eq!(seed.count, 100);
        assert_eq!(seed.sum_us, 99 * 100 + 50_000);
    }

    #[test]
    fn hit_ratio_is_none_before_any_get() {
        let m = Metrics::new();
        assert_eq!(m.snapshot().hit_ratio(), None);
        m.get_hits.fetch_add(3, Relaxed);
        m.get_misses.fetch_add(1, Relaxed);
        assert_eq!(m.snapshot().hit_ratio(), Some(0.75));
    }

    #[test]
    fn stats_reply_is_a_flat_array() {
        let m = Metrics::new();
        m.commands.fetch_add(3, Relaxed);
        let resp = m.snapshot().to_resp();
        assert!(resp.starts_with(b"*40\r\n$8\r\ncommands\r\n:3\r\n"));
    }
}
