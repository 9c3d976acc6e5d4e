//! TTL extension for hot keys: the decision, and the script that applies it.
//!
//! A hot key's TTL is extended by the rule's `extend_by`, never beyond its
//! `max_ttl`, never on a key without a TTL (persistent keys stay persistent)
//! or a missing key, and at most once per `window` per key.
//!
//! [`TtlExtender::decide`] does the per-key bookkeeping in process;
//! [`EXTEND_TTL_SCRIPT`] applies the extension in Redis atomically, reading
//! the TTL and setting the new one in one step so a concurrent write cannot
//! slip between them. [`extended_ttl`] is the same arithmetic in Rust.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::policy::HotPolicy;
use crate::policy::metrics::MechanismMetrics;

/// A key's remaining time to live, as Redis' `PTTL` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (`-2`).
    Missing,
    /// The key has no TTL (`-1`).
    Persistent,
    /// The key expires in this long.
    Remaining(Duration),
}

impl Ttl {
    /// From a `PTTL` reply (milliseconds, or -1 / -2).
    pub fn from_pttl(ms: i64) -> Self {
        match ms {
            -1 => Self::Persistent,
            ms if ms < 0 => Self::Missing,
            ms => Self::Remaining(Duration::from_millis(ms.unsigned_abs())),
        }
    }
}

/// What to do about one access to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlDecision {
    /// Set the key's TTL to `new_ttl` (run [`EXTEND_TTL_SCRIPT`]).
    Extend {
        /// The TTL to set.
        new_ttl: Duration,
    },
    /// Leave the key alone.
    Skip(SkipReason),
}

/// Why a key's TTL is not extended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its rate is below the rule's threshold.
    NotHot,
    /// It has no TTL.
    NoTtl,
    /// It does not exist.
    Missing,
    /// Its TTL is already at or above the ceiling.
    AtCeiling,
    /// It was extended less than one window ago.
    RecentlyExtended,
    /// The bookkeeping table is full of keys extended within their window.
    TrackerFull,
}

/// `min(current + extend_by, max_ttl)`, or `None` when that is not longer
/// than `current` (already at or above the ceiling).
pub fn extended_ttl(current: Duration, hot: &HotPolicy) -> Option<Duration> {
    let target = current.saturating_add(hot.extend_by).min(hot.max_ttl);
    (target > current).then_some(target)
}

/// Remembers when each key was last extended, to extend at most once per window.
///
/// Bound: at most `capacity` keys are remembered. Entries older than their
/// window are purged when the table is full; if none is, the extension is
/// refused ([`SkipReason::TrackerFull`]) rather than growing the table.
#[derive(Debug)]
pub struct TtlExtender {
    inner: Mutex<Recent>,
    capacity: usize,
    metrics: Option<Arc<MechanismMetrics>>,
}

#[derive(Debug)]
struct Recent {
    /// Key -> the instant it may be extended again. Looked up on every
    /// access to a hot key, so hashed with the detector's seeded hash (a few
    /// ns for a short key) rather than SipHash; the random seed keeps
    /// clients from aiming keys at one bucket.
    until: HashMap<Box<[u8]>, Instant, SeededState>,
    /// The earliest instant in `until` (a purge before it frees nothing).
    earliest: Option<Instant>,
}

/// Builds [`KeyHasher`]s from one random seed per extender.
#[derive(Debug, Clone)]
struct SeededState(u64);

impl BuildHasher for SeededState {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// Hashes a key's bytes with [`super::hash::hash`]. A `Box<[u8]>` writes its
/// length, then its bytes, which `hash` mixes in with the length again.
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = super::hash::hash(self.0, bytes);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(17) ^ n as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl TtlExtender {
    /// An extender remembering at most `capacity` keys.
    pub fn new(capacity: NonZeroUsize) -> Self {
        let seed = RandomState::new().hash_one(0x7474_6c78_u64);
        Self {
            inner: Mutex::new(Recent {
                until: HashMap::with_hasher(SeededState(seed)),
                earliest: None,
            }),
            capacity: capacity.get(),
            metrics: None,
        }
    }

    /// Same as [`TtlExtender::new`], counting extensions into `metrics`.
    pub fn with_metrics(capacity: NonZeroUsize, metrics: Arc<MechanismMetrics>) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::new(capacity)
        }
    }

    /// Decides for one access at `now` to `key`, whose estimated rate is
    /// `rate` accesses per second and whose TTL is `ttl`, under `hot`.
    /// An `Extend` decision is recorded: the key will not be extended again
    /// before `now + hot.window`.
    pub fn decide(
        &self,
        key: &[u8],
        rate: f64,
        ttl: Ttl,
        hot: &HotPolicy,
        now: Instant,
    ) -> TtlDecision {
        if rate * hot.window.as_secs_f64() < hot.threshold.get() as f64 {
            return TtlDecision::Skip(SkipReason::NotHot);
        }
        let current = match ttl {
            Ttl::Missing => return TtlDecision::Skip(SkipReason::Missing),
            Ttl::Persistent => return TtlDecision::Skip(SkipReason::NoTtl),
            Ttl::Remaining(d) => d,
        };
        let Some(new_ttl) = extended_ttl(current, hot) else {
            return TtlDecision::Skip(SkipReason::AtCeiling);
        };
        let mut recent = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.until.get(key).is_some_and(|until| now < *until) {
            return TtlDecision::Skip(SkipReason::RecentlyExtended);
        }
        if recent.until.len() >= self.capacity && !recent.until.contains_key(key) {
            if recent.earliest.is_some_and(|e| now >= e) {
                recent.until.retain(|_, until| now < *until);
                recent.earliest = recent.until.values().min().copied();
            }
            if recent.until.len() >= self.capacity {
                return TtlDecision::Skip(SkipReason::TrackerFull);
            }
        }
        let until = now + hot.window;
        recent.until.insert(key.into(), until);
        recent.earliest = Some(recent.earliest.map_or(until, |e| e.min(until)));
        drop(recent);
        if let Some(m) = &self.metrics {
            m.ttl_extensions.fetch_add(1, Relaxed);
        }
        TtlDecision::Extend { new_ttl }
    }

    /// Keys currently remembered (at most the capacity).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .until
            .len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Extends a key's TTL atomically in Redis, with a ceiling.
///
/// `KEYS[1]` the key; `ARGV[1]` milliseconds to add; `ARGV[2]` the ceiling in
/// milliseconds. Returns the new TTL in ms, or the unchanged `PTTL` when the
/// key is missing (`-2`), persistent (`-1`) or already at the ceiling.
pub const EXTEND_TTL_SCRIPT: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return ttl end
local target = math.min(ttl + tonumber(ARGV[1]), tonumber(ARGV[2]))
if target <= ttl then return ttl end
redis.call('PEXPIRE', KEYS[1], target)
return target
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    fn hot() -> HotPolicy {
        HotPolicy {
            threshold: NonZeroU64::new(100).unwrap_or(NonZeroU64::MIN),
            window: Duration::from_secs(10),
            extend_by: Duration::from_secs(60),
            max_ttl: Duration::from_secs(300),
        }
    }

    #[test]
    fn arithmetic_respects_the_ceiling() {
        let h = hot();
        assert_eq!(
            extended_ttl(Duration::from_secs(60), &h),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            extended_ttl(Duration::from_secs(280), &h),
            Some(Duration::from_secs(300))
        );
        assert_eq!(extended_ttl(Duration::from_secs(300), &h), None);
        assert_eq!(extended_ttl(Duration::from_secs(900), &h), None);
    }

    #[test]
    fn pttl_mapping() {
        assert_eq!(Ttl::from_pttl(-2), Ttl::Missing);
        assert_eq!(Ttl::from_pttl(-1), Ttl::Persistent);
        assert_eq!(
            Ttl::from_pttl(1500),
            Ttl::Remaining(Duration::from_millis(1500))
        );
    }
}
