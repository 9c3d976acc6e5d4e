//! The most recent IP blocks this consumer wrote, bounded.

use std::collections::VecDeque;

use serde::Serialize;

/// Blocks remembered (oldest forgotten first): bounds memory whatever the
/// number of abusive IPs; the authoritative list is in Redis.
pub const MAX_REMEMBERED_BLOCKS: usize = 1024;
/// Longest IP text kept (longer strings from a hostile producer are cut).
const MAX_IP_LEN: usize = 64;

/// One block written to Redis by this consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockedIp {
    /// The IP as the gateway reported it.
    pub ip: String,
    /// Rate-limit hits that triggered the block.
    pub hits: u32,
    /// When the block ends, Unix milliseconds.
    pub expires_at_ms: u64,
}

#[derive(Debug, Default)]
pub(crate) struct BlockedIps {
    /// Oldest first; one entry per IP.
    recent: VecDeque<BlockedIp>,
}

impl BlockedIps {
    pub(crate) fn record(&mut self, ip: &str, hits: u32, expires_at_ms: u64) {
        let mut end = ip.len().min(MAX_IP_LEN);
        while !ip.is_char_boundary(end) {
            end -= 1;
        }
        let ip = &ip[..end];
        self.recent.retain(|b| b.ip != ip);
        if self.recent.len() == MAX_REMEMBERED_BLOCKS {
            self.recent.pop_front();
        }
        self.recent.push_back(BlockedIp {
            ip: ip.to_owned(),
            hits,
            expires_at_ms,
        });
    }

    /// Blocks still in force at `now_ms`.
    pub(crate) fn active(&self, now_ms: u64) -> usize {
        self.recent
            .iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .count()
    }

    /// Up to `limit` blocks in force at `now_ms`, most recent first.
    pub(crate) fn latest(&self, now_ms: u64, limit: usize) -> Vec<BlockedIp> {
        self.recent
            .iter()
            .rev()
            .filter(|b| b.expires_at_ms > now_ms)
            .take(limit)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_deduplicated_and_expiring() {
        let mut b = BlockedIps::default();
        for i in 0..(MAX_REMEMBERED_BLOCKS + 10) {
            b.record(&format!("10.0.{}.{}", i / 256, i % 256), 5, 1_000);
        }
        assert_eq!(b.recent.len(), MAX_REMEMBERED_BLOCKS);
        assert_eq!(b.active(999), MAX_REMEMBERED_BLOCKS);
        assert_eq!(b.active(1_000), 0);
        b.record("10.0.0.200", 7, 5_000);
        b.record("10.0.0.200", 9, 6_000);
        let latest = b.latest(2_000, 10);
        assert_eq!(latest.len(), 1);
        assert_eq!((latest[0].hits, latest[0].expires_at_ms), (9, 6_000));
        b.record(&"x".repeat(500), 1, 9_000);
        assert_eq!(b.latest(0, 1)[0].ip.len(), MAX_IP_LEN);
    }
}
