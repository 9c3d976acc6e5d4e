//! One rule's partition of the near cache: sharded maps with CLOCK
//! (second-chance) eviction, an entry and a byte budget, a max age, and
//! frequency-based admission.
//!
//! Bounds, per partition: at most `max_entries` entries and `max_bytes`
//! bytes, where an entry costs its key, its value (the raw `GET` reply) and
//! [`ENTRY_OVERHEAD`]. Both are split evenly over the shards (each shard
//! enforces its share, so the totals hold without a shared counter). The
//! eviction queue holds at most `2 * entries + 64` keys per shard (stale
//! positions are compacted away).
//!
//! Admission (TinyLFU's idea, with the hot-key detector as the frequency
//! sketch): when a shard is full, the candidate's estimated access count is
//! compared with the victim's; a colder candidate is not admitted, and the
//! victim's count is halved so that a key which stopped being read
//! eventually loses its place.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::time::Instant;

use crate::policy::NearCachePolicy;
use crate::policy::metrics::MechanismMetrics;

/// Bytes charged per entry on top of its key and value: the map slot, the
/// eviction queue slot and the entry header.
pub(crate) const ENTRY_OVERHEAD: usize = 128;
/// Most shards per partition.
const MAX_SHARDS: usize = 16;

/// What became of an insertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored.
    Stored,
    /// A write or invalidation happened since the fill was sent.
    Stale,
    /// Larger than `max_value_bytes` or than a shard's byte share.
    TooLarge,
    /// The cache is full of keys read more often.
    NotAdmitted,
}

struct Entry {
    value: Bytes,
    expires: Instant,
    seq: u64,
    size: usize,
    referenced: bool,
    freq: u32,
}

#[derive(Default)]
struct Shard {
    map: HashMap<Bytes, Entry>,
    /// Insertion order: `(key, seq)`; a position is stale when the key's
    /// entry has another `seq` (or none).
    clock: VecDeque<(Bytes, u64)>,
    seq: u64,
    bytes: usize,
}

/// Keeps shards on separate cache lines.
#[repr(align(64))]
#[derive(Default)]
struct Padded(Mutex<Shard>);

/// One rule's near cache.
pub(crate) struct Part {
    pub(crate) policy: NearCachePolicy,
    shards: Box<[Padded]>,
    mask: usize,
    shard_entries: usize,
    shard_bytes: usize,
    metrics: Arc<MechanismMetrics>,
}

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Part")
            .field("policy", &self.policy)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Part {
    pub(crate) fn new(policy: NearCachePolicy, metrics: Arc<MechanismMetrics>) -> Self {
        let (entries, bytes) = (policy.max_entries.get(), policy.max_bytes.get());
        let largest = policy.max_value_bytes.get() + ENTRY_OVERHEAD;
        // As many shards as the budgets allow while each shard can still
        // hold one entry of the largest value.
        let mut n = MAX_SHARDS;
        while n > 1 && (entries / n == 0 || bytes / n < largest) {
            n /= 2;
        }
        Self {
            policy,
            shards: (0..n).map(|_| Padded::default()).collect(),
            mask: n - 1,
            shard_entries: (entries / n).max(1),
            shard_bytes: bytes / n,
            metrics,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // High bits: the low ones pick the coherence stripe.
        let i = ((hash >> 40) as usize) & self.mask;
        self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached reply for `key`, if present and younger than its max age.
    /// `freq` is the key's current access estimate (kept for admission).
    pub(crate) fn get(&self, hash: u64, key: &[u8], now: Instant, freq: u32) -> Option<Bytes> {
        let mut s = self.shard(hash);
        let e = s.map.get_mut(key)?;
        if now >= e.expires {
            let size = e.size;
            s.map.remove(key);
            s.bytes -= size;
            drop(s);
            self.gone(size, &self.metrics.near_cache_evictions);
            return None;
        }
        e.referenced = true;
        e.freq = e.freq.max(freq);
        Some(e.value.clone())
    }

    /// Stores `value` (copied: the reply is a slice of a shared read buffer)
    /// for `key` if `valid()` still holds under the shard lock.
    pub(crate) fn insert(
        &self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        now: Instant,
        freq: u32,
        valid: impl FnOnce() -> bool,
    ) -> Insert {
        let size = key.len() + value.len() + ENTRY_OVERHEAD;
        if value.len() > self.policy.max_value_bytes.get() || size > self.shard_bytes {
            return Insert::TooLarge;
        }
        let mut s = self.shard(hash);
        // Checked under the lock: a write or invalidation either ran its
        // removal before this (and bumped the version first, so `valid`
        // fails) or runs it after and removes what is stored here.
        if !valid() {
            return Insert::Stale;
        }
        let mut freed = (0usize, 0u64);
        if let Some(old) = s.map.remove(key) {
            s.bytes -= old.size;
            freed = (old.size, 1);
        }
        let mut evicted = (0usize, 0u64);
        let mut admitted = true;
        let mut turns = 2 * s.clock.len() + 1;
        while (s.map.len() >= self.shard_entries || s.bytes + size > self.shard_bytes) && turns > 0
        {
            turns -= 1;
            let Some((k, seq)) = s.clock.pop_front() else {
                break;
            };
            let Some(e) = s.map.get_mut(&k).filter(|e| e.seq == seq) else {
                continue; // stale position
            };
            if now < e.expires && e.referenced {
                e.referenced = false;
                s.clock.push_back((k, seq));
                continue;
            }
            if now < e.expires && freq < e.freq {
                // The candidate is colder than the victim: keep the victim
                // (aged, so a key that stopped being read loses eventually).
                e.freq /= 2;
                s.clock.push_front((k, seq));
                admitted = false;
                break;
            }
            if let Some(e) = s.map.remove(&k) {
                s.bytes -= e.size;
                evicted.0 += e.size;
                evicted.1 += 1;
            }
        }
        let fits = s.map.len() < self.shard_entries && s.bytes + size <= self.shard_bytes;
        if admitted && fits {
            s.seq += 1;
            let seq = s.seq;
            let key = Bytes::copy_from_slice(key);
            s.clock.push_back((key.clone(), seq));
            s.map.insert(
                key,
                Entry {
                    value: Bytes::copy_from_slice(value),
                    expires: now + self.policy.ttl,
                    seq,
                    size,
                    referenced: false,
                    freq,
                },
            );
            s.bytes += size;
            if s.clock.len() > 2 * s.map.len() + 64 {
                let Shard { map, clock, .. } = &mut *s;
                clock.retain(|(k, seq)| map.get(k).is_some_and(|e| e.seq == *seq));
            }
        }
        drop(s);
        let m = &self.metrics;
        m.near_cache_evictions.fetch_add(evicted.1, Relaxed);
        m.near_cache_entries.fetch_sub(evicted.1 + freed.1, Relaxed);
        m.near_cache_bytes
            .fetch_sub((evicted.0 + freed.0) as u64, Relaxed);
        if admitted && fits {
            m.near_cache_entries.fetch_add(1, Relaxed);
            m.near_cache_bytes.fetch_add(size as u64, Relaxed);
            Insert::Stored
        } else {
            Insert::NotAdmitted
        }
    }

    /// Drops `key`'s entry; whether there was one.
    pub(crate) fn remove(&self, hash: u64, key: &[u8]) -> bool {
        let mut s = self.shard(hash);
        let Some(e) = s.map.remove(key) else {
            return false;
        };
        s.bytes -= e.size;
        drop(s);
        self.gone(e.size, &self.metrics.near_cache_invalidations);
        true
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            let mut s = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            let (n, bytes) = (s.map.len() as u64, s.bytes as u64);
            *s = Shard::default();
            drop(s);
            self.metrics.near_cache_entries.fetch_sub(n, Relaxed);
            self.metrics.near_cache_bytes.fetch_sub(bytes, Relaxed);
        }
    }

    fn gone(&self, size: usize, counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, Relaxed);
        self.metrics.near_cache_entries.fetch_sub(1, Relaxed);
        self.metrics
            .near_cache_bytes
            .fetch_sub(size as u64, Relaxed);
    }

    /// Entries and bytes held (locks each shard in turn).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(n, b), sh| {
            let s = sh.0.lock().unwrap_or_else(PoisonError::into_inner);
            (n + s.map.len(), b + s.bytes)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::time::Duration;

    use super::*;
    use crate::policy::NearAdmission;

    fn part(entries: usize, bytes: usize, value: usize) -> Part {
        let policy = NearCachePolicy {
            ttl: Duration::from_secs(1),
            max_entries: NonZeroUsize::new(entries).unwrap(),
            max_bytes: NonZeroUsize::new(bytes).unwrap(),
            max_value_bytes: NonZeroUsize::new(value).unwrap(),
            admit: NearAdmission::All,
            hot_rate: NonZeroU32::new(1).unwrap(),
        };
        Part::new(policy, Arc::new(MechanismMetrics::default()))
    }

    fn h(i: u64) -> u64 {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_hold_and_entries_expire() {
        let p = part(100, 8 * 1024, 512);
        let now = Instant::now();
        let v = vec![b'x'; 400];
        for i in 0..1000u64 {
            let key = format!("k{i}");
            p.insert(h(i), key.as_bytes(), &v, now, 1, || true);
            let (n, b) = p.usage();
            assert!(n <= 100 && b <= 8 * 1024, "{n} entries, {b} bytes");
        }
        let m = p.metrics.snapshot();
        assert_eq!(m.near_cache_bytes as usize, p.usage().1);
        assert_eq!(m.near_cache_entries as usize, p.usage().0);
        assert!(m.near_cache_evictions > 0);
        assert_eq!(
            p.insert(h(1), b"big", &[0; 513], now, 1, || true),
            Insert::TooLarge
        );
        assert_eq!(p.insert(h(2), b"s", b"v", now, 1, || false), Insert::Stale);
        let later = now + Duration::from_secs(1);
        assert_eq!(p.insert(h(3), b"t", b"v", now, 9, || true), Insert::Stored);
        assert!(p.get(h(3), b"t", now, 9).is_some());
        assert!(p.get(h(3), b"t", later, 9).is_none(), "max age");
        p.clear();
        assert_eq!(p.usage(), (0, 0));
        assert_eq!(p.metrics.snapshot().near_cache_bytes, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn hot_entries_resist_cold_candidates() {
        let p = part(1, 1 << 20, 1024);
        let now = Instant::now();
        assert_eq!(p.insert(1, b"hot", b"v", now, 100, || true), Insert::Stored);
        assert_eq!(
            p.insert(2, b"cold", b"v", now, 1, || true),
            Insert::NotAdmitted
        );
        assert!(p.get(1, b"hot", now, 100).is_some());
        // A hotter candidate wins (the victim's reference bit is spent first).
        assert_eq!(
            p.insert(3, b"hotter", b"v", now, 500, || true),
            Insert::Stored
        );
        assert!(p.get(1, b"hot", now, 1).is_none());
        assert!(p.remove(3, b"hotter"));
        assert_eq!(p.usage(), (0, 0));
    }
}
