//! Counters of the cache mechanisms, shared by every component that is
//! handed the same [`MechanismMetrics`], and read as one [`MechanismSnapshot`]
//! (what `NEXUS.STATS` shows).
//!
//! Each counter is a relaxed `AtomicU64`: incrementing costs one uncontended
//! atomic add, and a snapshot is a set of independent loads (the fields are
//! not read at one instant, which is fine for monitoring).
//!
//! ```
//! use std::sync::Arc;
//! use nexus_cache::policy::metrics::MechanismMetrics;
//!
//! let metrics = Arc::new(MechanismMetrics::default());
//! metrics.collapsed_calls.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
//! let snap = metrics.snapshot();
//! assert_eq!(snap.collapsed_calls, 3);
//! assert!(snap.render().contains("collapsed_calls:3"));
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters. Components increment the fields directly.
#[derive(Debug, Default)]
pub struct MechanismMetrics {
    /// Calls answered by joining another caller's singleflight flight.
    pub collapsed_calls: AtomicU64,
    /// Keys that became hot (entered the hot set) in the detector.
    pub hot_keys: AtomicU64,
    /// TTL extensions granted to hot keys.
    pub ttl_extensions: AtomicU64,
    /// Tag invalidations performed.
    pub invalidations: AtomicU64,
    /// Keys deleted by tag invalidations.
    pub invalidated_keys: AtomicU64,
    /// Policy files loaded and swapped in by the reloader.
    pub policy_reloads_ok: AtomicU64,
    /// Policy files rejected by the reloader (the old policy stayed).
    pub policy_reloads_failed: AtomicU64,
    /// `GET`s answered from the near cache.
    pub near_cache_hits: AtomicU64,
    /// `GET`s of near-cached rules not answered from it (absent, expired, or the cache was off).
    pub near_cache_misses: AtomicU64,
    /// Near-cache entries evicted to stay within `max_entries`/`max_bytes`, or expired.
    pub near_cache_evictions: AtomicU64,
    /// Near-cache entries dropped because their key was written (through the proxy or, via client tracking, on Redis).
    pub near_cache_invalidations: AtomicU64,
    /// Whole near-cache flushes (tracking link lost, `FLUSHALL`/`FLUSHDB`, writes to unknown keys, policy changes).
    pub near_cache_flushes: AtomicU64,
    /// Gauge: bytes held by the near cache (keys, values and bookkeeping).
    pub near_cache_bytes: AtomicU64,
    /// Gauge: entries held by the near cache.
    pub near_cache_entries: AtomicU64,
    /// Gauge: the near cache's byte bound (the `max_bytes` of the rules it serves now).
    pub near_cache_capacity_bytes: AtomicU64,
    /// Gauge (`_now`, so the exporter types it as one): 1 while the near cache's invalidation link is subscribed (the cache serves only then).
    pub near_cache_tracking_now: AtomicU64,
    /// Fill leases this proxy took in Redis (on a miss, or for an early refresh).
    pub leases_taken: AtomicU64,
    /// Leases held by this proxy's fillers that a deletion through this proxy cancelled.
    pub leases_cancelled: AtomicU64,
    /// Readers held by the stampede guard (ended in one of the three ways below).
    pub held_readers: AtomicU64,
    /// Held readers answered with the filled value.
    pub held_filled: AtomicU64,
    /// Held readers answered nil after `wait_timeout` (as without the guard).
    pub held_timed_out: AtomicU64,
    /// Held readers handed the lease after the previous filler's expired.
    pub held_handed_over: AtomicU64,
    /// Readers not held because `max_waiters` or the key table was full (answered nil).
    pub held_overflow: AtomicU64,
    /// Readers answered with a stale copy while a refill was in progress.
    pub stale_served: AtomicU64,
    /// Hits answered nil ahead of expiry (XFetch) so one client refreshes the key.
    pub early_refreshes: AtomicU64,
    /// Fills not written because their lease was cancelled or had expired (answered nil).
    pub late_fills_dropped: AtomicU64,
    /// Readers the stampede guard holds right now (a gauge, see
    /// [`MechanismSnapshot::GAUGES`]).
    pub held_now: AtomicU64,
}

/// A copy of [`MechanismMetrics`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MechanismSnapshot {
    /// See [`MechanismMetrics::collapsed_calls`].
    pub collapsed_calls: u64,
    /// See [`MechanismMetrics::hot_keys`].
    pub hot_keys: u64,
    /// See [`MechanismMetrics::ttl_extensions`].
    pub ttl_extensions: u64,
    /// See [`MechanismMetrics::invalidations`].
    pub invalidations: u64,
    /// See [`MechanismMetrics::invalidated_keys`].
    pub invalidated_keys: u64,
    /// See [`MechanismMetrics::policy_reloads_ok`].
    pub policy_reloads_ok: u64,
    /// See [`MechanismMetrics::policy_reloads_failed`].
    pub policy_reloads_failed: u64,
    /// See [`MechanismMetrics::near_cache_hits`].
    pub near_cache_hits: u64,
    /// See [`MechanismMetrics::near_cache_misses`].
    pub near_cache_misses: u64,
    /// See [`MechanismMetrics::near_cache_evictions`].
    pub near_cache_evictions: u64,
    /// See [`MechanismMetrics::near_cache_invalidations`].
    pub near_cache_invalidations: u64,
    /// See [`MechanismMetrics::near_cache_flushes`].
    pub near_cache_flushes: u64,
    /// See [`MechanismMetrics::near_cache_bytes`].
    pub near_cache_bytes: u64,
    /// See [`MechanismMetrics::near_cache_entries`].
    pub near_cache_entries: u64,
    /// See [`MechanismMetrics::near_cache_capacity_bytes`].
    pub near_cache_capacity_bytes: u64,
    /// See [`MechanismMetrics::near_cache_tracking_now`].
    pub near_cache_tracking_now: u64,
    /// See [`MechanismMetrics::leases_taken`].
    pub leases_taken: u64,
    /// See [`MechanismMetrics::leases_cancelled`].
    pub leases_cancelled: u64,
    /// See [`MechanismMetrics::held_readers`].
    pub held_readers: u64,
    /// See [`MechanismMetrics::held_filled`].
    pub held_filled: u64,
    /// See [`MechanismMetrics::held_timed_out`].
    pub held_timed_out: u64,
    /// See [`MechanismMetrics::held_handed_over`].
    pub held_handed_over: u64,
    /// See [`MechanismMetrics::held_overflow`].
    pub held_overflow: u64,
    /// See [`MechanismMetrics::stale_served`].
    pub stale_served: u64,
    /// See [`MechanismMetrics::early_refreshes`].
    pub early_refreshes: u64,
    /// See [`MechanismMetrics::late_fills_dropped`].
    pub late_fills_dropped: u64,
    /// See [`MechanismMetrics::held_now`].
    pub held_now: u64,
}

impl MechanismMetrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MechanismSnapshot {
        MechanismSnapshot {
            collapsed_calls: self.collapsed_calls.load(Relaxed),
            hot_keys: self.hot_keys.load(Relaxed),
            ttl_extensions: self.ttl_extensions.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            invalidated_keys: self.invalidated_keys.load(Relaxed),
            policy_reloads_ok: self.policy_reloads_ok.load(Relaxed),
            policy_reloads_failed: self.policy_reloads_failed.load(Relaxed),
            near_cache_hits: self.near_cache_hits.load(Relaxed),
            near_cache_misses: self.near_cache_misses.load(Relaxed),
            near_cache_evictions: self.near_cache_evictions.load(Relaxed),
            near_cache_invalidations: self.near_cache_invalidations.load(Relaxed),
            near_cache_flushes: self.near_cache_flushes.load(Relaxed),
            near_cache_bytes: self.near_cache_bytes.load(Relaxed),
            near_cache_entries: self.near_cache_entries.load(Relaxed),
            near_cache_capacity_bytes: self.near_cache_capacity_bytes.load(Relaxed),
            near_cache_tracking_now: self.near_cache_tracking_now.load(Relaxed),
            leases_taken: self.leases_taken.load(Relaxed),
            leases_cancelled: self.leases_cancelled.load(Relaxed),
            held_readers: self.held_readers.load(Relaxed),
            held_filled: self.held_filled.load(Relaxed),
            held_timed_out: self.held_timed_out.load(Relaxed),
            held_handed_over: self.held_handed_over.load(Relaxed),
            held_overflow: self.held_overflow.load(Relaxed),
            stale_served: self.stale_served.load(Relaxed),
            early_refreshes: self.early_refreshes.load(Relaxed),
            late_fills_dropped: self.late_fills_dropped.load(Relaxed),
            held_now: self.held_now.load(Relaxed),
        }
    }
}

impl MechanismSnapshot {
    /// The [`fields`](Self::fields) that are current values (gauges: they go
    /// down as well as up); every other field is a running count (a
    /// counter). Exporters read this list, never the name's shape. Names of
    /// fields not (yet) in `fields` are harmless here.
    pub const GAUGES: &'static [&'static str] = &[
        "held_now",
        "near_cache_bytes",
        "near_cache_capacity_bytes",
        "near_cache_entries",
        "near_cache_tracking_now",
    ];

    /// Whether field `name` is a gauge (listed in [`GAUGES`](Self::GAUGES)).
    pub fn is_gauge(name: &str) -> bool {
        Self::GAUGES.contains(&name)
    }

    /// `(name, value)` pairs in a stable order.
    pub fn fields(&self) -> [(&'static str, u64); 27] {
        [
            ("collapsed_calls", self.collapsed_calls),
            ("hot_keys", self.hot_keys),
            ("ttl_extensions", self.ttl_extensions),
            ("invalidations", self.invalidations),
            ("invalidated_keys", self.invalidated_keys),
            ("policy_reloads_ok", self.policy_reloads_ok),
            ("policy_reloads_failed", self.policy_reloads_failed),
            ("near_cache_hits", self.near_cache_hits),
            ("near_cache_misses", self.near_cache_misses),
            ("near_cache_evictions", self.near_cache_evictions),
            ("near_cache_invalidations", self.near_cache_invalidations),
            ("near_cache_flushes", self.near_cache_flushes),
            ("near_cache_bytes", self.near_cache_bytes),
            ("near_cache_entries", self.near_cache_entries),
            ("near_cache_capacity_bytes", self.near_cache_capacity_bytes),
            ("near_cache_tracking_now", self.near_cache_tracking_now),
            ("leases_taken", self.leases_taken),
            ("leases_cancelled", self.leases_cancelled),
            ("held_readers", self.held_readers),
            ("held_filled", self.held_filled),
            ("held_timed_out", self.held_timed_out),
            ("held_handed_over", self.held_handed_over),
            ("held_overflow", self.held_overflow),
            ("stale_served", self.stale_served),
            ("early_refreshes", self.early_refreshes),
            ("late_fills_dropped", self.late_fills_dropped),
            ("held_now", self.held_now),
        ]
    }

    /// `name:value` lines, the `INFO`-like shape `NEXUS.STATS` answers with.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, value) in self.fields() {
            let _ = writeln!(out, "{name}:{value}");
        }
        out
    }
}
