//! Keyed limiter: one GCRA cell per key in a sharded, bounded hash table.

use std::fmt;
use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder as RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::clock::{Clock, TokioClock};
use crate::gcra::{self, Decision};
use crate::{LimitKey, LimiterConfig, Quota};

/// A keyed token-bucket limiter with bounded memory.
///
/// Each key owns one `AtomicU64` (its GCRA state) in one of `shards` hash
/// tables. A check of a known key takes a shard read lock (shared, never held
/// across an await) and one compare-and-swap: O(1), no allocation. A new key
/// takes the shard's write lock once to insert.
///
/// **Bound.** At most `max_keys` keys are tracked (each shard holds at most
/// `ceil(max_keys / shards)`). Keys whose bucket is full again are idle and are
/// dropped by [`purge_idle`](Self::purge_idle) (run it periodically with
/// [`spawn_housekeeper`](Self::spawn_housekeeper)) and by a shard that reaches
/// its cap (at most once per refill period per shard, so a flood cannot turn
/// every request into a scan). When a shard is full of active keys, further
/// new keys are charged to one *shared overflow bucket* with the same quota:
/// they are still limited, together, and memory does not grow. Keys are hashed
/// with foldhash under a per-limiter random seed (hashbrown's default), so a
/// peer cannot precompute keys that collide in one shard; the per-shard cap
/// bounds the damage if it could.
///
/// Cloning is cheap (an `Arc`); clones share state.
pub struct KeyedLimiter<K, C = TokioClock> {
    inner: Arc<Inner<K, C>>,
}

struct Inner<K, C> {
    quota: Quota,
    clock: C,
    hasher: RandomState,
    shards: Box<[Shard<K>]>,
    shard_mask: usize,
    per_shard_cap: usize,
    overflow: AtomicU64,
    overflow_checks: AtomicU64,
}

/// Padded so two shards' locks never share a cache line.
#[repr(align(128))]
struct Shard<K> {
    table: RwLock<Table<K>>,
}

struct Table<K> {
    entries: HashTable<(K, AtomicU64)>,
    /// Clock reading of the last cap-triggered purge of this shard.
    last_purge: u64,
}

impl<K: LimitKey> KeyedLimiter<K, TokioClock> {
    /// A limiter on tokio time (so `tokio::time::pause` drives it in tests).
    pub fn new(config: LimiterConfig) -> Self {
        Self::with_clock(config, TokioClock::new())
    }
}

impl<K: LimitKey, C: Clock> KeyedLimiter<K, C> {
    /// A limiter reading time from `clock`.
    pub fn with_clock(config: LimiterConfig, clock: C) -> Self {
        let shards = config.shards();
        let per_shard_cap = config.max_keys().get().div_ceil(shards);
        let shards: Box<[Shard<K>]> = (0..shards)
            .map(|_| Shard {
                table: RwLock::new(Table {
                    entries: HashTable::new(),
                    last_purge: 0,
                }),
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                quota: config.quota(),
                clock,
                hasher: RandomState::default(),
                shard_mask: shards.len() - 1,
                shards,
                per_shard_cap,
                overflow: AtomicU64::new(0),
                overflow_checks: AtomicU64::new(0),
            }),
        }
    }

    /// Takes one token from `key`'s bucket if there is one.
    #[inline]
    pub fn check(&self, key: &K) -> Decision {
        let inner = &*self.inner;
        let now = inner.clock.now_nanos();
        let hash = inner.hasher.hash_one(key);
        let shard = &inner.shards[(hash >> 32) as usize & inner.shard_mask];
        {
            let table = read(&shard.table);
            if let Some((_, cell)) = table.entries.find(hash, |(k, _)| k == key) {
                return gcra::check(&inner.quota, cell, now);
            }
        }
        self.insert_and_check(shard, key, hash, now)
    }

    /// Takes one token from the shared overflow bucket (used for keys that
    /// did not fit, and by the layer for requests without a key).
    pub fn check_shared(&self) -> Decision {
        let inner = &*self.inner;
        inner.overflow_checks.fetch_add(1, Ordering::Relaxed);
        gcra::check(&inner.quota, &inner.overflow, inner.clock.now_nanos())
    }

    #[cold]
    fn insert_and_check(&self, shard: &Shard<K>, key: &K, hash: u64, now: u64) -> Decision {
        let inner = &*self.inner;
        let mut table = write(&shard.table);
        if let Some((_, cell)) = table.entries.find(hash, |(k, _)| k == key) {
            return gcra::check(&inner.quota, cell, now);
        }
        if table.entries.len() >= inner.per_shard_cap {
            let due = now.saturating_sub(table.last_purge) >= inner.quota.period_nanos();
            if due {
                table.last_purge = now;
                table.entries.retain(|(_, cell)| !gcra::is_idle(cell, now));
            }
            if table.entries.len() >= inner.per_shard_cap {
                drop(table);
                return self.check_shared();
            }
        }
        let cell = AtomicU64::new(0);
        let decision = gcra::check(&inner.quota, &cell, now);
        let hasher = &inner.hasher;
        table
            .entries
            .insert_unique(hash, (key.to_stored(), cell), |(k, _)| hasher.hash_one(k));
        decision
    }

    /// Forgets every key whose bucket is full again and releases table memory
    /// left over from a flood. Returns how many keys were dropped.
    pub fn purge_idle(&self) -> usize {
        let inner = &*self.inner;
        let mut removed = 0;
        for shard in inner.shards.iter() {
            let now = inner.clock.now_nanos();
            let mut table = write(&shard.table);
            let before = table.entries.len();
            table.entries.retain(|(_, cell)| !gcra::is_idle(cell, now));
            removed += before - table.entries.len();
            if table.entries.capacity() > 64 && table.entries.len() < table.entries.capacity() / 4 {
                let hasher = &inner.hasher;
                table.entries.shrink_to_fit(|(k, _)| hasher.hash_one(k));
            }
        }
        removed
    }

    /// Spawns a task on the current tokio runtime that calls
    /// [`purge_idle`](Self::purge_idle) every `every`. The task stops when the
    /// returned guard is dropped or when every clone of this limiter is gone.
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn spawn_housekeeper(&self, every: std::time::Duration) -> Housekeeper {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let removed = KeyedLimiter { inner }.purge_idle();
                tracing::trace!(removed, "rate limiter purged idle keys");
            }
        });
        Housekeeper { task }
    }

    /// Number of keys currently tracked.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| read(&s.table).entries.len())
            .sum()
    }

    /// True when no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the hash tables (excluding heap owned by the keys
    /// themselves, e.g. a `String` key's text).
    pub fn table_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| read(&s.table).entries.allocation_size())
            .sum()
    }

    /// Upper bound on [`table_bytes`](Self::table_bytes) at `max_keys`: each
    /// shard's table has at most `next_power_of_two(cap × 8 / 7)` slots of
    /// `size_of::<(K, AtomicU64)>() + 1` bytes (+ one SIMD group).
    pub fn table_bytes_bound(&self) -> usize {
        let inner = &*self.inner;
        let slots = (inner.per_shard_cap.saturating_mul(8) / 7 + 1).next_power_of_two();
        let per_slot = std::mem::size_of::<(K, AtomicU64)>() + 1;
        inner.shards.len() * (slots * per_slot + 16)
    }

    /// Most keys tracked at once (`max_keys` rounded up to a multiple of `shards`).
    pub fn max_keys(&self) -> usize {
        self.inner.per_shard_cap * self.inner.shards.len()
    }

    /// How many checks went to the shared bucket (keys over the cap or
    /// requests without a key).
    pub fn shared_checks(&self) -> u64 {
        self.inner.overflow_checks.load(Ordering::Relaxed)
    }

    /// The quota applied to every key.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }
}

impl<K, C> Clone for KeyedLimiter<K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, C> fmt::Debug for KeyedLimiter<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("quota", &self.inner.quota)
            .field("shards", &self.inner.shards.len())
            .field("per_shard_cap", &self.inner.per_shard_cap)
            .finish_non_exhaustive()
    }
}

/// Owns the housekeeping task; dropping it stops the task.
#[derive(Debug)]
pub struct Housekeeper {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Housekeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// Nothing panics while a shard lock is held except a user `Hash`/`Eq`; the
// table stays consistent in that case, so poisoning is ignored.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::time::Duration;

    use super::*;
    use crate::ManualClock;

    fn limiter(
        cap: u32,
        rate: u32,
        max_keys: usize,
        shards: usize,
    ) -> (KeyedLimiter<u64, ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let cfg = LimiterConfig::new(Quota::per_second(
            NonZeroU32::new(cap).unwrap(),
            NonZeroU32::new(rate).unwrap(),
        ))
        .with_max_keys(NonZeroUsize::new(max_keys).unwrap())
        .with_shards(shards)
        .unwrap();
        (KeyedLimiter::with_clock(cfg, clock.clone()), clock)
    }

    #[test]
    fn keys_are_independent() {
        let (l, _) = limiter(2, 1, 100, 4);
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        assert!(l.check(&2).is_ok());
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn idle_keys_are_purged_and_active_ones_kept() {
        let (l, clock) = limiter(2, 1, 100, 4);
        for k in 0..10 {
            l.check(&k).unwrap();
        }
        l.check(&0).unwrap(); // key 0 now empty: full again only after 2 s
        clock.advance(Duration::from_millis(1500));
        assert_eq!(l.purge_idle(), 9);
        assert_eq!(l.len(), 1);
        clock.advance(Duration::from_millis(500));
        assert_eq!(l.purge_idle(), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn flood_of_distinct_keys_stays_under_cap_and_is_still_limited() {
        // 1 shard, 8 keys max, 3 tokens each, 1 token per second.
        let (l, clock) = limiter(3, 1, 8, 1);
        for k in 0..1000u64 {
            let _ = l.check(&k);
        }
        assert_eq!(l.len(), 8, "table never exceeds max_keys");
        assert!(l.table_bytes() <= l.table_bytes_bound());
        // Keys beyond the cap shared one bucket of 3 tokens: 992 checks, 3 admitted.
        assert_eq!(l.shared_checks(), 992);
        assert!(l.check(&5000).is_err(), "overflow bucket is exhausted");
        // Keys already tracked keep their own buckets.
        assert!(l.check(&0).is_ok());
        // Once tracked keys go idle, a full shard makes room for new keys.
        clock.advance(Duration::from_secs(10));
        assert!(l.check(&6000).is_ok());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn cap_triggered_purge_is_rate_limited() {
        let (l, clock) = limiter(1, 1, 4, 1);
        for k in 0..4u64 {
            l.check(&k).unwrap();
        }
        // All four are active: a new key goes to the shared bucket and the
        // purge that found nothing is not retried on the next new key.
        assert!(l.check(&10).is_ok());
        clock.advance(Duration::from_millis(999));
        assert!(l.check(&11).is_err());
        assert_eq!(l.len(), 4);
        clock.advance(Duration::from_millis(1));
        assert!(l.check(&12).is_ok());
        assert_eq!(l.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn housekeeper_purges_on_tokio_time_and_stops_on_drop() {
        let cfg = LimiterConfig::default();
        let l: KeyedLimiter<u64> = KeyedLimiter::new(cfg);
        let hk = l.spawn_housekeeper(Duration::from_secs(1));
        for k in 0..100 {
            l.check(&k).unwrap();
        }
        assert_eq!(l.len(), 100);
        // One token used of 10 at 2/s: full again after 0.5 s.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(l.is_empty());
        drop(hk);
        l.check(&1).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(l.len(), 1, "no purge after the housekeeper was dropped");
    }
}
