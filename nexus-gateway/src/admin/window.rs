//! [`RecentRequests`]: request rate, latency quantiles and status classes over
//! the last seconds, for the dashboard.
//!
//! Prometheus histograms answer "how many requests took at most 250 ms since
//! start"; a live page wants "p99 over the last 10 s" with better than seed-bucket
//! resolution. This recorder keeps one slot per second in a fixed ring of
//! [`SLOTS`] slots, each with a log-linear latency histogram of [`BUCKETS`]
//! counters (8 sub-buckets per power of two of microseconds: a reported
//! quantile is within 1/16 of the true value). Memory is fixed
//! (`SLOTS * BUCKETS * 4` bytes, about 64 KiB) whatever the traffic.
//!
//! Recording is lock-free: a load, at most one compare-exchange per slot per
//! second, and three relaxed adds. The price is approximation: a sample racing
//! the reset of its slot at the turn of a second may be lost, and a read may
//! see a slot half-updated. The dashboard can live with that; exact counts are
//! in `/metrics`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::Serialize;
use tokio::time::Instant;

/// Seconds kept in the ring (one slot each); the series covers `SLOTS - 2`
/// complete seconds.
pub const SLOTS: usize = 64;
/// Latency buckets per slot.
pub const BUCKETS: usize = 256;
/// Seconds aggregated for the headline rate and quantiles.
pub const WINDOW_SECS: u64 = 10;

/// Status classes counted per slot.
#[derive(Debug, Clone, Copy)]
enum Class {
    Informational = 0,
    Success = 1,
    Redirect = 2,
    ClientError = 3,
    ServerError = 4,
    RateLimited = 5,
    Forbidden = 6,
}
const CLASSES: usize = 7;

impl Class {
    fn of(status: u16) -> [Option<Self>; 2] {
        let class = match status {
            200..=299 => Self::Success,
            300..=399 => Self::Redirect,
            400..=499 => Self::ClientError,
            500..=599 => Self::ServerError,
            _ => Self::Informational,
        };
        let detail = match status {
            429 => Some(Self::RateLimited),
            403 => Some(Self::Forbidden),
            _ => None,
        };
        [Some(class), detail]
    }
}

struct Slot {
    /// Second this slot holds, plus one (0: never used).
    tag: AtomicU64,
    count: AtomicU64,
    classes: [AtomicU64; CLASSES],
    buckets: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Self {
        Self {
            tag: AtomicU64::new(0),
            count: AtomicU64::new(0),
            classes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        self.count.store(0, Relaxed);
        self.classes.iter().for_each(|c| c.store(0, Relaxed));
        self.buckets.iter().for_each(|b| b.store(0, Relaxed));
    }
}

/// Bucket of a latency in microseconds (log-linear, 8 sub-buckets per octave).
pub(crate) fn bucket_of(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize; // >= 3
    let sub = ((us >> (exp - 3)) & 7) as usize;
    (8 + (exp - 3) * 8 + sub).min(BUCKETS - 1)
}

/// Midpoint of a bucket, microseconds.
pub(crate) fn bucket_mid_us(idx: usize) -> f64 {
    if idx < 8 {
        return idx as f64;
    }
    let exp = (idx - 8) / 8 + 3;
    let sub = ((idx - 8) % 8) as u64;
    let low = (8 + sub) << (exp - 3);
    let width = 1u64 << (exp - 3);
    low as f64 + width as f64 / 2.0
}

/// Requests seen over the last seconds. See the module docs.
pub struct RecentRequests {
    origin: Instant,
    slots: Box<[Slot]>,
    total: AtomicU64,
    rate_limited_total: AtomicU64,
    blocked_total: AtomicU64,
}

impl std::fmt::Debug for RecentRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentRequests")
            .field("total", &self.total.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for RecentRequests {
    fn default() -> Self {
        Self::new()
    }
}

/// One complete second of [`RecentRequests`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SecondSample {
    /// Seconds ago (1 = the last complete second).
    pub ago: u64,
    /// Requests finished in that second.
    pub requests: u64,
    /// 5xx responses in that second.
    pub errors: u64,
    /// Median latency, milliseconds (`None` without requests).
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
}

/// Aggregate over the last [`WINDOW_SECS`] complete seconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowSummary {
    /// Seconds aggregated.
    pub window_secs: u64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rate_per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
    /// 2xx responses.
    pub status_2xx: u64,
    /// 3xx responses.
    pub status_3xx: u64,
    /// 4xx responses (429 and 403 included).
    pub status_4xx: u64,
    /// 5xx responses.
    pub status_5xx: u64,
    /// 429 responses (rate limited).
    pub status_429: u64,
    /// 403 responses (blocked IPs, or an upstream's 403).
    pub status_403: u64,
    /// Requests ever finished.
    pub requests_total: u64,
    /// Requests ever refused by the rate limiter.
    pub rate_limited_total: u64,
    /// Requests ever refused by the blocklist.
    pub blocked_total: u64,
}

impl RecentRequests {
    /// An empty recorder whose seconds count from now (tokio time).
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
            total: AtomicU64::new(0),
            rate_limited_total: AtomicU64::new(0),
            blocked_total: AtomicU64::new(0),
        }
    }

    fn second(&self) -> u64 {
        self.origin.elapsed().as_secs()
    }

    /// Records one finished request.
    pub fn record(&self, status: u16, millis: f64) {
        self.total.fetch_add(1, Relaxed);
        let sec = self.second();
        let slot = &self.slots[(sec % SLOTS as u64) as usize];
        let tag = slot.tag.load(Relaxed);
        if tag != sec + 1 {
            // A late sample for a second already recycled is dropped.
            if tag > sec + 1 {
                return;
            }
            if slot
                .tag
                .compare_exchange(tag, sec + 1, Relaxed, Relaxed)
                .is_ok()
            {
                slot.clear();
            }
        }
        slot.count.fetch_add(1, Relaxed);
        for class in Class::of(status).into_iter().flatten() {
            slot.classes[class as usize].fetch_add(1, Relaxed);
        }
        // Saturating float-to-int cast: negative or NaN latencies land in 0.
        let us = (millis * 1000.0) as u64;
        slot.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    /// Counts a request refused by the rate limiter (its 429 is also recorded
    /// by [`record`](Self::record)).
    pub fn record_rate_limited(&self) {
        self.rate_limited_total.fetch_add(1, Relaxed);
    }

    /// Counts a request refused by the blocklist.
    pub fn record_blocked(&self) {
        self.blocked_total.fetch_add(1, Relaxed);
    }

    /// The slot of second `sec`, if it still holds that second.
    fn slot_for(&self, sec: u64) -> Option<&Slot> {
        let slot = &self.slots[(sec % SLOTS as u64) as usize];
        (slot.tag.load(Relaxed) == sec + 1).then_some(slot)
    }

    /// The last `n` complete seconds, most recent last.
    pub fn series(&self, n: usize) -> Vec<SecondSample> {
        let now = self.second();
        let n = n.min(SLOTS - 2) as u64;
        (1..=n.min(now))
            .rev()
            .map(|ago| {
                let mut hist = [0u64; BUCKETS];
                let (requests, errors) = match self.slot_for(now - ago) {
                    Some(slot) => {
                        add_buckets(&mut hist, slot);
                        (
                            slot.count.load(Relaxed),
                            slot.classes[Class::ServerError as usize].load(Relaxed),
                        )
                    }
                    None => (0, 0),
                };
                SecondSample {
                    ago,
                    requests,
                    errors,
                    p50_ms: quantile_ms(&hist, 0.50),
                    p99_ms: quantile_ms(&hist, 0.99),
                }
            })
            .collect()
    }

    /// Aggregate of the last [`WINDOW_SECS`] complete seconds (fewer right
    /// after start).
    pub fn summary(&self) -> WindowSummary {
        let now = self.second();
        let secs = WINDOW_SECS.min(now);
        let mut hist = [0u64; BUCKETS];
        let mut classes = [0u64; CLASSES];
        let mut requests = 0;
        for ago in 1..=secs {
            if let Some(slot) = self.slot_for(now - ago) {
                add_buckets(&mut hist, slot);
                requests += slot.count.load(Relaxed);
                for (sum, c) in classes.iter_mut().zip(&slot.classes) {
                    *sum += c.load(Relaxed);
                }
            }
        }
        WindowSummary {
            window_secs: secs,
            requests,
            rate_per_sec: if secs == 0 {
                0.0
            } else {
                requests as f64 / secs as f64
            },
            p50_ms: quantile_ms(&hist, 0.50),
            p90_ms: quantile_ms(&hist, 0.90),
            p99_ms: quantile_ms(&hist, 0.99),
            status_2xx: classes[Class::Success as usize],
            status_3xx: classes[Class::Redirect as usize],
            status_4xx: classes[Class::ClientError as usize],
            status_5xx: classes[Class::ServerError as usize],
            status_429: classes[Class::RateLimited as usize],
            status_403: classes[Class::Forbidden as usize],
            requests_total: self.total.load(Relaxed),
            rate_limited_total: self.rate_limited_total.load(Relaxed),
            blocked_total: self.blocked_total.load(Relaxed),
        }
    }
}

fn add_buckets(hist: &mut [u64; BUCKETS], slot: &Slot) {
    for (h, b) in hist.iter_mut().zip(&slot.buckets) {
        *h += u64::from(b.load(Relaxed));
    }
}

/// The `q` quantile of a bucket histogram, milliseconds (bucket midpoint).
fn quantile_ms(hist: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let n: u64 = hist.iter().sum();
    if n == 0 {
        return None;
    }
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_mid_us(i) / 1000.0);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            7,
            8,
            9,
            15,
            16,
            17,
            100,
            1_000,
            12_345,
            1 << 20,
            1 << 32,
        ] {
            let b = bucket_of(us);
            assert!(b >= last, "{us}");
            last = b;
            let mid = bucket_mid_us(b);
            let err = (mid - us as f64).abs() / (us.max(1) as f64);
            assert!(err <= 1.0 / 16.0 + 1e-9 || us < 8, "{us}: mid {mid}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_and_quantiles_over_the_window() {
        let r = RecentRequests::new();
        // 10 s of 100 req/s: 98 % at ~2 ms, 2 % at ~200 ms, one 500 per second.
        for _ in 0..10 {
            for i in 0..100 {
                let (status, ms) = match i {
                    0 => (500, 2.0),
                    1 => (429, 200.0),
                    2 => (200, 200.0),
                    _ => (200, 2.0),
                };
                r.record(status, ms);
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let s = r.summary();
        assert_eq!(s.window_secs, 10);
        assert_eq!(s.requests, 1000);
        assert!((s.rate_per_sec - 100.0).abs() < 1e-9);
        let p50 = s.p50_ms.unwrap();
        let p99 = s.p99_ms.unwrap();
        assert!((p50 - 2.0).abs() / 2.0 < 0.07, "{p50}");
        assert!((p99 - 200.0).abs() / 200.0 < 0.07, "{p99}");
        assert_eq!(
            (s.status_2xx, s.status_4xx, s.status_5xx, s.status_429),
            (980, 10, 10, 10)
        );
        let series = r.series(5);
        assert_eq!(series.len(), 5);
        assert!(series.iter().all(|x| x.requests == 100 && x.errors == 1));
        assert_eq!(series.last().unwrap().ago, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn old_seconds_fall_out_and_memory_is_fixed() {
        let r = RecentRequests::new();
        r.record(200, 1.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.summary().requests, 1);
        tokio::time::advance(Duration::from_secs(WINDOW_SECS + 1)).await;
        let s = r.summary();
        assert_eq!((s.requests, s.p99_ms, s.requests_total), (0, None, 1));
        // A full lap of the ring later the slot is reused, not stale.
        tokio::time::advance(Duration::from_secs(SLOTS as u64)).await;
        r.record(200, 1.0);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(r.summary().requests, 1);
        assert_eq!(r.series(SLOTS).len(), SLOTS - 2);
    }
}
