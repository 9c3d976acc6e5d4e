//! Hot-key detection: which keys are being read hardest right now.
//!
//! [`HotKeys`] is a streaming heavy-hitter detector with time decay and a
//! memory footprint fixed at construction, whatever the number of distinct
//! keys:
//!
//! - keys are spread over `shards` independent shards (by hash), each behind
//!   its own short-held mutex, so threads rarely meet;
//! - each shard is a HeavyKeeper sketch (`depth` x `width` buckets of one
//!   `u64`) plus a list of its `top_k` heaviest keys (keys longer than
//!   `max_key_len` are counted but never listed);
//! - every `window` all counts are halved (exponential decay), so a key that
//!   stops being read cools down within a few windows.
//!
//! Memory bound ([`HotKeys::memory_bound`]):
//! `shards * (depth * width * 8 + top_k * (size_of entry + max_key_len))`
//! bytes, e.g. 16 * (2 * 1024 * 8 + 16 * (40 + 256)) = 338 KiB for the defaults.
//!
//! [`HotKeys::observe`] is O(depth + top_k) with no allocation except when a key
//! enters a top list. It does not read the clock: time advances through
//! [`HotKeys::advance`], called by the task from [`HotKeys::spawn_ticker`] (or
//! by a test with a paused tokio clock), and lazily applied by each shard.
//! [`HotKeys::observe_due`] is the same observation for a caller that acts
//! on hot keys (the proxy's TTL extension): it also says whether this is one
//! of the accesses to act on, one in `every` of a listed key, from a
//! countdown kept in the key's top-list entry.
//!
//! Rates: with halving every `W`, a key read at a steady `r` per second has a
//! count of `r * (W + t)` at time `t` into a window, so the estimated rate is
//! `count / (W + t)`.
//!
//! ```
//! use nexus_cache::hotkeys::{HotKeys, HotKeysConfig};
//!
//! let hot = HotKeys::new(HotKeysConfig::default());
//! for _ in 0..1000 { hot.observe(b"product:1"); }
//! hot.observe(b"product:2");
//! let top = hot.top(1);
//! assert_eq!(top[0].0, b"product:1");
//! ```

mod hash;
mod shard;
mod ttl;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::policy::metrics::MechanismMetrics;
use shard::{Shard, TopEntry};

pub use ttl::{EXTEND_TTL_SCRIPT, SkipReason, Ttl, TtlDecision, TtlExtender, extended_ttl};

/// Sizing and behaviour of a [`HotKeys`] detector.
#[derive(Debug, Clone)]
pub struct HotKeysConfig {
    /// Number of shards (rounded up to a power of two).
    pub shards: NonZeroUsize,
    /// Sketch rows per shard (1..=4 are sensible; 2 is the usual choice).
    pub depth: NonZeroUsize,
    /// Buckets per row per shard (rounded up to a power of two).
    pub width: NonZeroUsize,
    /// Keys listed per shard.
    pub top_k: NonZeroUsize,
    /// Longest key that can be listed, in bytes.
    pub max_key_len: usize,
    /// Half-life of the counts.
    pub window: Duration,
    /// Rate (accesses per second) from which [`HotKeys::is_hot`] says yes.
    pub hot_rate: f64,
    /// Hash seed; `None` draws a random one (use `Some` for reproducible tests).
    pub seed: Option<u64>,
}

impl Default for HotKeysConfig {
    fn default() -> Self {
        Self {
            shards: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
            depth: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
            width: NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN),
            top_k: NonZeroUsize::new(16).unwrap_or(NonZeroUsize::MIN),
            max_key_len: 256,
            window: Duration::from_secs(1),
            hot_rate: 100.0,
            seed: None,
        }
    }
}

/// One access counted by [`HotKeys::observe_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The key's estimated count in the current window, after this access.
    pub count: u32,
    /// Whether the caller should act on this access (see
    /// [`HotKeys::observe_due`]).
    pub due: bool,
}

/// A thread-safe, bounded-memory detector of the most accessed keys.
pub struct HotKeys {
    shards: Box<[Padded]>,
    shard_shift: u32,
    seed: u64,
    table: Box<[u32]>,
    max_key_len: usize,
    window: Duration,
    hot_count: u32,
    hot_rate: f64,
    origin: Instant,
    epoch: AtomicU64,
    metrics: Option<Arc<MechanismMetrics>>,
    bound: usize,
}

/// Keeps shards on separate cache lines.
#[repr(align(64))]
struct Padded(Mutex<Shard>);

impl HotKeys {
    /// A detector sized by `config`, with time starting now.
    pub fn new(config: HotKeysConfig) -> Self {
        Self::build(config, None)
    }

    /// Same as [`HotKeys::new`], counting keys that become hot into `metrics`.
    pub fn with_metrics(config: HotKeysConfig, metrics: Arc<MechanismMetrics>) -> Self {
        Self::build(config, Some(metrics))
    }

    fn build(config: HotKeysConfig, metrics: Option<Arc<MechanismMetrics>>) -> Self {
        let shards = config.shards.get().next_power_of_two();
        let width = config.width.get().next_power_of_two();
        let depth = config.depth.get();
        let top_k = config.top_k.get();
        let seed = config
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(0x6e65_7875_u64));
        let window = config.window.max(Duration::from_millis(1));
        let hot_count =
            (config.hot_rate * window.as_secs_f64()).clamp(1.0, f64::from(u32::MAX)) as u32;
        let bound = shards
            * (depth * width * 8 + top_k * (std::mem::size_of::<TopEntry>() + config.max_key_len))
            + shards * std::mem::size_of::<Padded>();
        Self {
            shards: (0..shards)
                .map(|i| {
                    Padded(Mutex::new(Shard::new(
                        depth,
                        width,
                        top_k,
                        seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    )))
                })
                .collect(),
            shard_shift: 64 - shards.trailing_zeros(),
            seed,
            table: shard::decay_table(),
            max_key_len: config.max_key_len,
            window,
            hot_count,
            hot_rate: config.hot_rate,
            origin: Instant::now(),
            epoch: AtomicU64::new(0),
            metrics,
            bound,
        }
    }

    #[inline]
    fn shard(&self, h: u64) -> MutexGuard<'_, Shard> {
        // `checked_shr` handles the one-shard case (shift of 64).
        let i = h.checked_shr(self.shard_shift).unwrap_or(0) as usize;
        let mut s = self.shards[i]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.decay_to(self.epoch.load(Relaxed));
        s
    }

    /// Counts one access to `key` and returns its estimated count in the
    /// current window, after this access (turn it into a rate with
    /// [`HotKeys::rate_of_count`] without hashing and locking again).
    #[inline]
    pub fn observe(&self, key: &[u8]) -> u32 {
        self.observe_due(key, 0).count
    }

    /// [`HotKeys::observe`] for a caller that acts on hot keys (a TTL
    /// extension, say) but need not look at every access of one: the
    /// answer is [`Observed::due`] for one access in `every` of a listed
    /// key, kept in the key's top-list entry (already locked to count the
    /// access, so this costs a decrement). Every access of a key that is
    /// not listed is due, so a caller that filters by count first sees no
    /// difference for cold keys. `every` of 0 is [`HotKeys::observe`]: due,
    /// and the countdown left alone.
    ///
    /// The countdown is per key, shared by all callers: with callers that
    /// pass different `every` (at least 1), a key is due at most
    /// `max(every)` of their accesses after its last due one. A key that
    /// enters the list is due at once.
    #[inline]
    pub fn observe_due(&self, key: &[u8], every: u16) -> Observed {
        let h = hash::hash(self.seed, key);
        let mut shard = self.shard(h);
        let (est, pos) = shard.observe(h, key, &self.table, self.max_key_len);
        let Some(pos) = pos else {
            return Observed {
                count: est,
                due: true,
            };
        };
        let e = &mut shard.top[pos];
        let due = every == 0 || e.countdown == 0;
        if every > 0 {
            e.countdown = if due { every - 1 } else { e.countdown - 1 };
        }
        if est >= self.hot_count && !e.hot {
            e.hot = true;
            if let Some(m) = &self.metrics {
                m.hot_keys.fetch_add(1, Relaxed);
            }
        }
        Observed { count: est, due }
    }

    /// The rate (accesses per second) of a key whose estimated count is
    /// `count`, as [`HotKeys::rate`] computes it.
    pub fn rate_of_count(&self, count: u32) -> f64 {
        self.rate_of_count_at(count, Instant::now())
    }

    /// [`HotKeys::rate_of_count`] at `now`: a caller that needs the time
    /// anyway (the TTL extender's window check) reads the clock once for
    /// both; on a hot key's read path the clock reads cost more than the
    /// rest of the rate computation.
    pub fn rate_of_count_at(&self, count: u32, now: Instant) -> f64 {
        f64::from(count) / self.rate_divisor(now)
    }

    /// Estimated accesses per second of `key` (0 for keys the sketch lost).
    pub fn rate(&self, key: &[u8]) -> f64 {
        let h = hash::hash(self.seed, key);
        let count = self.shard(h).estimate(h);
        self.rate_of_count(count)
    }

    /// Whether `key`'s estimated rate is at least the configured `hot_rate`.
    pub fn is_hot(&self, key: &[u8]) -> bool {
        self.rate(key) >= self.hot_rate
    }

    /// The `n` keys with the highest estimated rates, highest first.
    pub fn top(&self, n: usize) -> Vec<(Vec<u8>, f64)> {
        let now = Instant::now();
        self.advance(now);
        let mut all: Vec<(Vec<u8>, u32)> = Vec::new();
        for s in self.shards.iter() {
            let mut shard = s.0.lock().unwrap_or_else(PoisonError::into_inner);
            shard.decay_to(self.epoch.load(Relaxed));
            all.extend(shard.top.iter().map(|e| (e.key.to_vec(), e.count)));
        }
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        let div = self.rate_divisor(now);
        all.into_iter()
            .map(|(k, c)| (k, f64::from(c) / div))
            .collect()
    }

    /// Moves the detector's clock to `now`: counts are halved once per
    /// `window` elapsed since construction (applied lazily per shard).
    pub fn advance(&self, now: Instant) {
        let epoch = (now.saturating_duration_since(self.origin).as_nanos()
            / self.window.as_nanos().max(1)) as u64;
        self.epoch.fetch_max(epoch, Relaxed);
    }

    fn rate_divisor(&self, now: Instant) -> f64 {
        let epoch_start = self.window.as_secs_f64() * self.epoch.load(Relaxed) as f64;
        let into = (now.saturating_duration_since(self.origin).as_secs_f64() - epoch_start)
            .clamp(0.0, self.window.as_secs_f64());
        self.window.as_secs_f64() + into
    }

    /// Starts a task that calls [`HotKeys::advance`] four times per window.
    /// The task stops when the returned [`Ticker`] is dropped.
    pub fn spawn_ticker(self: &Arc<Self>) -> Ticker {
        let this = Arc::clone(self);
        let period = (self.window / 4).max(Duration::from_millis(1));
        Ticker(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                this.advance(Instant::now());
            }
        }))
    }

    /// The half-life of the counts.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Keys currently listed across all shards (at most `shards * top_k`).
    pub fn tracked_keys(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(PoisonError::into_inner).top.len())
            .sum()
    }

    /// Bytes currently held (sketch, top lists and their keys).
    pub fn memory_bytes(&self) -> usize {
        self.shards.len() * std::mem::size_of::<Padded>()
            + self
                .shards
                .iter()
                .map(|s| {
                    s.0.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .heap_bytes()
                })
                .sum::<usize>()
    }

    /// The most bytes this detector can ever hold (fixed at construction).
    pub fn memory_bound(&self) -> usize {
        self.bound
    }
}

impl std::fmt::Debug for HotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotKeys")
            .field("shards", &self.shards.len())
            .field("window", &self.window)
            .field("memory_bound", &self.bound)
            .finish_non_exhaustive()
    }
}

/// Owns the task started by [`HotKeys::spawn_ticker`]; dropping it stops the task.
#[derive(Debug)]
pub struct Ticker(JoinHandle<()>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.abort();
    }
}
