//! What the consumer did: lock-free counters plus a few bounded views
//! (rate window, recent blocks, latency histograms), read by the admin
//! server's `/stats` and `/metrics`.

mod blocked;
mod rate;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nexus_events::{ALL_TOPICS, EventKind};
#[cfg(feature = "admin")]
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use blocked::BlockedIps;
pub use blocked::{BlockedIp, MAX_REMEMBERED_BLOCKS};
use rate::RateWindow;
pub use rate::WINDOW_SECS as RATE_WINDOW_SECS;

/// Most blocks listed by [`Stats::snapshot`] (the most recent ones).
pub const SNAPSHOT_BLOCKED_IPS: usize = 100;

/// Upper bounds of the handling-time histogram buckets, seconds.
#[cfg(feature = "admin")]
pub(crate) const DURATION_BUCKETS: [f64; 10] = [
    0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 0.5, 2.0,
];

/// Counters of what the consumer did; shared, monotonic, cheap to update.
///
/// The public atomics are the historical counters; the rest is reached
/// through [`Stats::snapshot`] and the Prometheus collector
/// (`metrics` module, `admin` feature). Every structure here is bounded: three per-type
/// counters and histograms, a [`RATE_WINDOW_SECS`]-bucket rate window, at
/// most [`MAX_REMEMBERED_BLOCKS`] remembered blocks.
#[derive(Debug)]
pub struct Stats {
    /// Records read from Kafka (or events handed over in process).
    pub records: AtomicU64,
    /// Records that were not valid events (logged and skipped).
    pub malformed: AtomicU64,
    /// `gateway.rate_limit.hit` events handled.
    pub rate_limit_hits: AtomicU64,
    /// IPs blocked in Redis.
    pub ips_blocked: AtomicU64,
    /// `gateway.circuit.opened` alerts raised.
    pub circuit_alerts: AtomicU64,
    /// `gateway.request.completed` events handled.
    pub requests_completed: AtomicU64,
    /// Latency spikes flagged.
    pub latency_spikes: AtomicU64,
    /// Offsets committed (batches).
    pub commits: AtomicU64,
    /// Handler failures (Redis unavailable): the event is retried later.
    pub handler_errors: AtomicU64,
    /// Events handled successfully, per type (order of [`ALL_TOPICS`]).
    handled: [AtomicU64; 3],
    /// Time spent handling, per type (order of [`ALL_TOPICS`]); only read
    /// by the Prometheus exposition, so only kept with the `admin` feature.
    #[cfg(feature = "admin")]
    durations: [Histogram; 3],
    /// Consumer lag in records (see [`Stats::lag`]); -1 while unknown.
    lag: AtomicI64,
    rate: Mutex<RateWindow>,
    blocked: Mutex<BlockedIps>,
}

impl Default for Stats {
    fn default() -> Self {
        #[cfg(feature = "admin")]
        let histogram = || Histogram::new(DURATION_BUCKETS);
        Self {
            records: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            rate_limit_hits: AtomicU64::new(0),
            ips_blocked: AtomicU64::new(0),
            circuit_alerts: AtomicU64::new(0),
            requests_completed: AtomicU64::new(0),
            latency_spikes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            handler_errors: AtomicU64::new(0),
            handled: Default::default(),
            #[cfg(feature = "admin")]
            durations: [histogram(), histogram(), histogram()],
            lag: AtomicI64::new(-1),
            rate: Mutex::new(RateWindow::new(Instant::now())),
            blocked: Mutex::new(BlockedIps::default()),
        }
    }
}

/// Index of a kind in [`ALL_TOPICS`].
pub(crate) fn kind_index(kind: &EventKind) -> usize {
    match kind {
        EventKind::RateLimitHit(_) => 0,
        EventKind::CircuitOpened(_) => 1,
        EventKind::RequestCompleted(_) => 2,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Stats {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads one counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Counts one successfully handled event of `kind` that took `elapsed`.
    pub(crate) fn record_handled(&self, kind: &EventKind, elapsed: Duration) {
        let i = kind_index(kind);
        Self::inc(&self.handled[i]);
        #[cfg(feature = "admin")]
        self.durations[i].observe(elapsed.as_secs_f64());
        #[cfg(not(feature = "admin"))]
        let _ = elapsed;
        lock(&self.rate).record(Instant::now(), 1);
    }

    /// Remembers a block written to Redis.
    pub(crate) fn record_block(&self, ip: &str, hits: u32, expires_at_ms: u64) {
        Self::inc(&self.ips_blocked);
        lock(&self.blocked).record(ip, hits, expires_at_ms);
    }

    /// Sets the consumer lag (records not yet read), `None` when unknown.
    pub fn set_lag(&self, lag: Option<u64>) {
        let v = lag.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        self.lag.store(v, Ordering::Relaxed);
    }

    /// Consumer lag in records, when known: records on the assigned
    /// partitions not yet handled, i.e. the high watermark minus the read
    /// position (rewound to the first unhandled record after a handler
    /// failure), as of the last fetch. Records produced since the last
    /// fetch are not counted.
    pub fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag.load(Ordering::Relaxed)).ok()
    }

    /// Events handled successfully, per type, in the order of [`ALL_TOPICS`].
    pub fn by_type(&self) -> [(&'static str, u64); 3] {
        [0, 1, 2].map(|i| (ALL_TOPICS[i], Self::get(&self.handled[i])))
    }

    /// Events handled successfully, all types.
    pub fn events_total(&self) -> u64 {
        self.handled.iter().map(Self::get).sum()
    }

    /// Events handled per second over the last [`RATE_WINDOW_SECS`] seconds.
    pub fn events_per_second(&self) -> f64 {
        lock(&self.rate).per_second(Instant::now())
    }

    /// IP blocks written by this consumer and still in force (counted over
    /// the last [`MAX_REMEMBERED_BLOCKS`] blocks).
    pub fn active_blocks(&self) -> usize {
        lock(&self.blocked).active(unix_ms_now())
    }

    #[cfg(feature = "admin")]
    pub(crate) fn durations(&self) -> &[Histogram; 3] {
        &self.durations
    }

    /// Everything at once, as `/stats` serves it.
    pub fn snapshot(&self) -> StatsSnapshot {
        let now_ms = unix_ms_now();
        let (blocked_ips, blocked_ips_active) = {
            let b = lock(&self.blocked);
            (b.latest(now_ms, SNAPSHOT_BLOCKED_IPS), b.active(now_ms))
        };
        StatsSnapshot {
            events_total: self.events_total(),
            events_per_second: self.events_per_second(),
            by_type: self.by_type().into_iter().collect(),
            blocked_ips,
            blocked_ips_active,
            ips_blocked_total: Self::get(&self.ips_blocked),
            alerts_total: Self::get(&self.circuit_alerts),
            latency_spikes_total: Self::get(&self.latency_spikes),
            records_total: Self::get(&self.records),
            malformed_records: Self::get(&self.malformed),
            dropped: Self::get(&self.malformed),
            errors: Self::get(&self.handler_errors),
            commits_total: Self::get(&self.commits),
            lag: self.lag(),
        }
    }
}

/// A point-in-time view of [`Stats`]; the JSON of the admin `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Events handled successfully, all types.
    pub events_total: u64,
    /// Events handled per second over the last [`RATE_WINDOW_SECS`] seconds.
    pub events_per_second: f64,
    /// Events handled successfully, by type (topic name).
    pub by_type: std::collections::BTreeMap<&'static str, u64>,
    /// The most recent blocks still in force, newest first (at most
    /// [`SNAPSHOT_BLOCKED_IPS`]).
    pub blocked_ips: Vec<BlockedIp>,
    /// Blocks still in force (over the last [`MAX_REMEMBERED_BLOCKS`]).
    pub blocked_ips_active: usize,
    /// IPs blocked since start.
    pub ips_blocked_total: u64,
    /// Circuit-opened alerts raised.
    pub alerts_total: u64,
    /// Latency spikes flagged.
    pub latency_spikes_total: u64,
    /// Records read (valid or not).
    pub records_total: u64,
    /// Records skipped because they were not valid events (logged, never
    /// retried).
    pub malformed_records: u64,
    /// Deprecated alias of [`malformed_records`](Self::malformed_records),
    /// always equal to it: the gateway dashboard reads `dropped`. Not the
    /// producer's `dropped` (events lost before reaching Kafka).
    pub dropped: u64,
    /// Handler failures (the event was retried).
    pub errors: u64,
    /// Offset commits.
    pub commits_total: u64,
    /// Consumer lag in records: not yet handled on the assigned partitions
    /// (high watermark minus position, as of the last fetch). `null` while
    /// unknown (and in process).
    pub lag: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use nexus_events::Event;

    #[tokio::test(start_paused = true)]
    async fn snapshot_counts_by_type_and_blocks() {
        let s = Stats::default();
        let hit = Event::rate_limit_hit("10.0.0.1", "GET", "/", None);
        let done = Event::request_completed(
            nexus_events::RequestCompleted {
                method: "GET".into(),
                url: "/".into(),
                status_code: 200,
                latency_ms: 1.0,
                client_id: "c".into(),
            },
            None,
        );
        for _ in 0..3 {
            s.record_handled(&hit.kind, Duration::from_millis(1));
        }
        s.record_handled(&done.kind, Duration::from_millis(1));
        s.record_block("10.0.0.1", 5, unix_ms_now() + 60_000);
        s.set_lag(Some(7));
        tokio::time::advance(Duration::from_secs(1)).await;
        let snap = s.snapshot();
        assert_eq!(snap.events_total, 4);
        assert_eq!(snap.by_type["gateway.rate_limit.hit"], 3);
        assert_eq!(snap.by_type["gateway.request.completed"], 1);
        assert_eq!(snap.by_type["gateway.circuit.opened"], 0);
        assert!((snap.events_per_second - 4.0).abs() < 0.01, "{snap:?}");
        assert_eq!(snap.blocked_ips.len(), 1);
        assert_eq!((snap.blocked_ips_active, snap.ips_blocked_total), (1, 1));
        assert_eq!(snap.lag, Some(7));
        Stats::inc(&s.malformed);
        Stats::inc(&s.malformed);
        let snap = s.snapshot();
        assert_eq!((snap.malformed_records, snap.dropped), (2, 2));
        s.set_lag(None);
        assert_eq!(s.lag(), None);
        let json = serde_json::to_value(&snap).unwrap_or_default();
        for k in [
            "events_total",
            "events_per_second",
            "by_type",
            "blocked_ips",
            "alerts_total",
            "latency_spikes_total",
            "malformed_records",
            "dropped",
            "errors",
        ] {
            assert!(json.get(k).is_some(), "{k} missing from {json}");
        }
    }
}
