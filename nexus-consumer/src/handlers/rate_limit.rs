//! Per-IP hit counting over a sliding window.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Counts rate-limit hits per IP over a sliding window and says when an IP
/// reaches the threshold.
///
/// Memory bound: at most `max_ips` IPs, each with at most `threshold`
/// timestamps. When full, IPs whose last hit left the window are pruned; if
/// that frees nothing, the new IP is not tracked and counted in
/// [`HitCounter::untracked`] (an attacker rotating through more IPs than the
/// bound cannot grow memory).
#[derive(Debug)]
pub struct HitCounter {
    threshold: usize,
    window_ms: u64,
    max_ips: usize,
    hits: HashMap<String, VecDeque<u64>>,
    untracked: u64,
}

impl HitCounter {
    /// `threshold` hits within `window` trigger; at most `max_ips` tracked.
    pub fn new(threshold: u32, window: Duration, max_ips: usize) -> Self {
        Self {
            threshold: threshold.max(1) as usize,
            window_ms: window.as_millis().max(1) as u64,
            max_ips: max_ips.max(1),
            hits: HashMap::new(),
            untracked: 0,
        }
    }

    /// Records a hit of `ip` at `at_ms` (Unix ms). Returns the hit count when
    /// it reaches the threshold. The caller acts on it and then calls
    /// [`HitCounter::clear`], so a failed action (Redis down) is decided again
    /// when the event is redelivered.
    pub fn record(&mut self, ip: &str, at_ms: u64) -> Option<u32> {
        if !self.hits.contains_key(ip) && self.hits.len() >= self.max_ips {
            self.prune(at_ms);
            if self.hits.len() >= self.max_ips {
                self.untracked += 1;
                return None;
            }
        }
        let q = self.hits.entry(ip.to_owned()).or_default();
        let floor = at_ms.saturating_sub(self.window_ms);
        while q.front().is_some_and(|&t| t <= floor) {
            q.pop_front();
        }
        q.push_back(at_ms);
        if q.len() > self.threshold {
            q.pop_front();
        }
        (q.len() >= self.threshold).then_some(q.len() as u32)
    }

    /// Forgets the hits of `ip` (after it was blocked), so the next block
    /// needs `threshold` new hits.
    pub fn clear(&mut self, ip: &str) {
        self.hits.remove(ip);
    }

    /// Current hits of `ip` inside the window ending at `now_ms`.
    pub fn count(&self, ip: &str, now_ms: u64) -> usize {
        let floor = now_ms.saturating_sub(self.window_ms);
        self.hits
            .get(ip)
            .map_or(0, |q| q.iter().filter(|&&t| t > floor).count())
    }

    /// IPs tracked right now.
    pub fn tracked(&self) -> usize {
        self.hits.len()
    }

    /// Hits ignored because the map was full.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    fn prune(&mut self, now_ms: u64) {
        let floor = now_ms.saturating_sub(self.window_ms);
        self.hits
            .retain(|_, q| q.back().is_some_and(|&t| t > floor));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifth_hit_inside_the_window_triggers_once() {
        let mut c = HitCounter::new(5, Duration::from_secs(60), 10);
        for i in 0..4 {
            assert_eq!(c.record("1.2.3.4", 1_000 + i), None);
        }
        assert_eq!(c.record("1.2.3.4", 1_010), Some(5));
        // Not cleared until the caller says the block was written: a retry decides again.
        assert_eq!(c.record("1.2.3.4", 1_010), Some(5));
        c.clear("1.2.3.4");
        assert_eq!(c.count("1.2.3.4", 1_010), 0, "window cleared after a block");
        assert_eq!(c.record("1.2.3.4", 1_011), None);
    }

    #[test]
    fn hits_older_than_the_window_do_not_count() {
        let mut c = HitCounter::new(3, Duration::from_millis(100), 10);
        assert_eq!(c.record("ip", 0), None);
        assert_eq!(c.record("ip", 50), None);
        // 0 has left the window by 120: only 50 and 120 count.
        assert_eq!(c.record("ip", 120), None);
        assert_eq!(c.record("ip", 140), Some(3));
        c.clear("ip");
    }

    #[test]
    fn ips_are_counted_separately() {
        let mut c = HitCounter::new(2, Duration::from_secs(1), 10);
        assert_eq!(c.record("a", 1), None);
        assert_eq!(c.record("b", 2), None);
        assert_eq!(c.record("a", 3), Some(2));
        c.clear("a");
        assert_eq!(c.count("b", 3), 1);
    }

    #[test]
    fn memory_is_bounded_by_max_ips() {
        let mut c = HitCounter::new(5, Duration::from_secs(60), 100);
        for i in 0..10_000u64 {
            c.record(&format!("10.0.{}.{}", i / 256, i % 256), 1_000 + i);
        }
        assert_eq!(c.tracked(), 100);
        assert_eq!(c.untracked(), 9_900);
        // Once the window has passed, stale IPs are pruned to make room.
        assert_eq!(c.record("fresh", 1_000_000), None);
        assert_eq!(c.tracked(), 1);
    }
}
