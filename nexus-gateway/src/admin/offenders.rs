//! [`TopOffenders`]: the IPs the rate limiter rejects most, in bounded memory.
//!
//! `nexus_rate_limit_hits_total` deliberately has no per-IP label (a scan from
//! many addresses would explode its cardinality), so the dashboard shows the
//! top offenders instead. They are tracked with the Space-Saving algorithm
//! (Metwally et al.): at most [`CAPACITY`] counters; an IP not tracked when
//! the table is full replaces the smallest counter and inherits its count
//! (plus one). Any IP with more than `rejections / CAPACITY` rejections is
//! guaranteed to be in the table, and counts overestimate by at most the
//! inherited `error` reported next to them.

use std::net::IpAddr;
use std::sync::Mutex;

use serde::Serialize;

/// Counters kept (memory bound).
pub const CAPACITY: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    count: u64,
    error: u64,
}

/// One row of [`TopOffenders::top`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Offender {
    /// The rejected peer.
    pub ip: IpAddr,
    /// Estimated rejections (never an underestimate).
    pub count: u64,
    /// Most the estimate may exceed the true count by.
    pub error: u64,
}

/// Heavy hitters among rate-limited IPs. See the module docs.
#[derive(Debug, Default)]
pub struct TopOffenders {
    // std Mutex: held for a scan of at most CAPACITY entries, only on
    // rejections (not on the normal request path), never across `.await`.
    entries: Mutex<Vec<Entry>>,
}

impl TopOffenders {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one rejection of `ip`.
    pub fn record(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.iter_mut().find(|e| e.ip == ip) {
            e.count += 1;
            return;
        }
        if entries.len() < CAPACITY {
            entries.push(Entry {
                ip,
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(min) = entries.iter_mut().min_by_key(|e| e.count) {
            *min = Entry {
                ip,
                count: min.count + 1,
                error: min.count,
            };
        }
    }

    /// The `n` largest counts, largest first.
    pub fn top(&self, n: usize) -> Vec<Offender> {
        let mut rows: Vec<Offender> = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| Offender {
                ip: e.ip,
                count: e.count,
                error: e.error,
            })
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.ip.cmp(&b.ip)));
        rows.truncate(n);
        rows
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from(i.to_be_bytes())
    }

    #[test]
    fn heavy_hitters_survive_a_scan_within_the_bound() {
        let t = TopOffenders::new();
        for round in 0..1000u32 {
            t.record(ip(1));
            if round % 2 == 0 {
                t.record(ip(2));
            }
            // A scan from many addresses, each seen once.
            t.record(ip(1_000 + round));
        }
        let top = t.top(2);
        assert_eq!(top[0].ip, ip(1));
        assert_eq!(top[1].ip, ip(2));
        assert!(top[0].count >= 1000 && top[0].count - top[0].error <= 1000);
        assert!(top[1].count >= 500);
        assert!(t.entries.lock().unwrap().len() <= CAPACITY);
    }

    #[test]
    fn v4_mapped_v6_counts_as_v4() {
        let t = TopOffenders::new();
        t.record("127.0.0.1".parse().unwrap());
        t.record("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(t.top(5).len(), 1);
        assert_eq!(t.top(5)[0].count, 2);
    }
}
