//! Singleflight: concurrent calls for the same key share one execution.
//!
//! [`Group::run`] takes a key and a closure producing a future. The first
//! caller for a key (the *leader*) runs its future; callers arriving while it
//! is in flight (the *followers*) wait for the leader's value and get a clone
//! of it. Nothing is cached: an entry exists only while its flight is running,
//! so the map never holds more entries than there are concurrent callers.
//!
//! # Cancellation: follower takeover
//!
//! The leader drives its own future inside its caller's task; the work is not
//! spawned. If the leader's caller is dropped mid-flight (client disconnected,
//! `select!` lost, timeout), the flight is *abandoned*: its entry is removed and
//! every follower wakes up and retries. One of them becomes the new leader and
//! runs its own closure; the rest follow it. Followers therefore always get a
//! value (or [`SingleflightError::LeaderPanicked`]), never hang.
//!
//! Why not spawn the work? Spawning needs `Send + 'static` work and costs a
//! task allocation and a cross-thread wake on every call, including the
//! uncontended one, which is by far the most common. Takeover costs nothing
//! unless a leader is actually cancelled; then the work runs again from the
//! start in a follower (one extra upstream call, one extra round-trip of
//! latency for the followers). For a cache read that is the right trade.
//!
//! # Panics
//!
//! If the leader's future panics, the panic propagates to the leader's caller
//! as usual and every follower gets [`SingleflightError::LeaderPanicked`]
//! (they do not re-run work that just panicked).
//!
//! # Read-your-writes
//!
//! [`Group::invalidate`] detaches the in-flight entry of a key: callers that
//! arrive afterwards start a new flight instead of joining one that started
//! before. Call it when a write to the key has been acknowledged by the
//! server (before the acknowledgement is passed on), so that any read issued
//! after the client saw the write can only join a flight that began after it.
//! Followers that had already joined the detached flight still get its value;
//! they started before the write completed, so either order is valid for them.
//!
//! # Example
//!
//! ```
//! use nexus_cache::singleflight::Group;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let group: Group<&'static str, u64> = Group::new();
//! let (a, b) = tokio::join!(
//!     group.run("product:1", || async {
//!         tokio::task::yield_now().await; // still in flight when the second call arrives
//!         42
//!     }),
//!     group.run("product:1", || async { unreachable!("shared with the first call") }),
//! );
//! let (a, b) = (a.unwrap(), b.unwrap());
//! assert_eq!((a.value, b.value), (42, 42));
//! assert!(!a.shared && b.shared);
//! # });
//! ```

mod flight;

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::policy::metrics::MechanismMetrics;
use flight::{Flight, Waited};

/// A set of in-flight calls, keyed by `K`, sharing values of type `V`.
///
/// Cloning a `Group` is cheap and yields a handle to the same set of flights.
pub struct Group<K, V> {
    inner: Arc<Inner<K, V>>,
}

struct Inner<K, V> {
    /// Bound: one entry per key with a running leader; removed when the
    /// leader finishes, is dropped, or the key is invalidated.
    flights: Mutex<HashMap<K, Arc<Flight<V>>>>,
    next_id: AtomicU64,
    stats: GroupCounters,
    metrics: Option<Arc<MechanismMetrics>>,
}

#[derive(Default)]
struct GroupCounters {
    executions: AtomicU64,
    shared: AtomicU64,
    takeovers: AtomicU64,
    panics: AtomicU64,
    invalidations: AtomicU64,
}

/// The value a call produced, and whether it came from another caller's flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<V> {
    /// The value produced by the flight.
    pub value: V,
    /// `true` when this caller joined another caller's flight (a collapsed call).
    pub shared: bool,
}

/// Why a call did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SingleflightError {
    /// The leader's work panicked; the panic itself went to the leader's caller.
    #[error("the leading call of this flight panicked")]
    LeaderPanicked,
}

/// Counters of a [`Group`] since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Closures actually executed (one per flight, plus takeovers).
    pub executions: u64,
    /// Calls answered from another caller's flight (collapsed calls).
    pub shared: u64,
    /// Flights abandoned by a cancelled leader and taken over by a follower.
    pub takeovers: u64,
    /// Flights whose work panicked.
    pub panics: u64,
    /// In-flight entries detached by [`Group::invalidate`].
    pub invalidations: u64,
}

impl<K, V> Group<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    /// An empty group.
    pub fn new() -> Self {
        Self::build(None)
    }

    /// An empty group that also counts collapsed calls into `metrics`.
    pub fn with_metrics(metrics: Arc<MechanismMetrics>) -> Self {
        Self::build(Some(metrics))
    }

    fn build(metrics: Option<Arc<MechanismMetrics>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                flights: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                stats: GroupCounters::default(),
                metrics,
            }),
        }
    }

    /// Runs `work` for `key`, or joins the flight already running for `key`.
    ///
    /// `work` is called at most once, and only if this caller becomes the
    /// leader. The returned future is cancellation safe: dropping it never
    /// leaves other callers waiting forever (see the module docs).
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<Outcome<V>, SingleflightError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let flight = loop {
            let follow = {
                let mut flights = lock(&self.inner.flights);
                // One hash per call: `entry` both finds a flight and makes one.
                match flights.entry(key.clone()) {
                    Entry::Occupied(e) => Arc::clone(e.get()),
                    Entry::Vacant(e) => {
                        let id = self.inner.next_id.fetch_add(1, Relaxed);
                        break Arc::clone(e.insert(Arc::new(Flight::new(id))));
                    }
                }
            };
            match follow.wait().await {
                Waited::Done(value) => {
                    self.inner.stats.shared.fetch_add(1, Relaxed);
                    if let Some(m) = &self.inner.metrics {
                        m.collapsed_calls.fetch_add(1, Relaxed);
                    }
                    return Ok(Outcome {
                        value,
                        shared: true,
                    });
                }
                Waited::Panicked => return Err(SingleflightError::LeaderPanicked),
                // The leader was dropped: loop and lead (or follow a new leader).
                Waited::Abandoned => continue,
            }
        };

        self.inner.stats.executions.fetch_add(1, Relaxed);
        let guard = LeaderGuard {
            inner: &self.inner,
            key: &key,
            flight: &flight,
            done: false,
        };
        let value = work().await;
        Ok(Outcome {
            value: guard.complete(value),
            shared: false,
        })
    }

    /// Detaches the in-flight entry for `key`, if any, so that later calls
    /// start a new flight. Returns whether a flight was detached.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let removed = lock(&self.inner.flights).remove(key).is_some();
        if removed {
            self.inner.stats.invalidations.fetch_add(1, Relaxed);
        }
        removed
    }

    /// Number of flights currently running (the size of the map).
    pub fn in_flight(&self) -> usize {
        lock(&self.inner.flights).len()
    }

    /// Counters since the group was created.
    pub fn stats(&self) -> GroupStats {
        let s = &self.inner.stats;
        GroupStats {
            executions: s.executions.load(Relaxed),
            shared: s.shared.load(Relaxed),
            takeovers: s.takeovers.load(Relaxed),
            panics: s.panics.load(Relaxed),
            invalidations: s.invalidations.load(Relaxed),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Default for Group<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Clone for Group<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> fmt::Debug for Group<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("in_flight", &lock(&self.inner.flights).len())
            .finish_non_exhaustive()
    }
}

/// Owned by the leader while its work runs. Completing it publishes the value;
/// dropping it uncompleted (cancellation or panic) releases the followers.
struct LeaderGuard<'a, K: Hash + Eq + Clone, V> {
    inner: &'a Inner<K, V>,
    key: &'a K,
    flight: &'a Arc<Flight<V>>,
    done: bool,
}

impl<K: Hash + Eq + Clone, V> LeaderGuard<'_, K, V> {
    /// Removes this flight's entry (unless it was invalidated and replaced).
    fn detach(&self) {
        let mut flights = lock(&self.inner.flights);
        // Remove first (one hash); put back a newer flight in the rare case
        // the key was invalidated and a new flight started meanwhile.
        if let Some(f) = flights.remove(self.key)
            && f.id() != self.flight.id()
        {
            flights.insert(self.key.clone(), f);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> LeaderGuard<'_, K, V> {
    fn complete(mut self, value: V) -> V {
        self.detach();
        self.done = true;
        // After detaching no caller can join; any other reference is a follower.
        if Arc::strong_count(self.flight) > 1 {
            self.flight.finish(Waited::Done(value.clone()));
        }
        value
    }
}

impl<K: Hash + Eq + Clone, V> Drop for LeaderGuard<'_, K, V> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.detach();
        if std::thread::panicking() {
            self.inner.stats.panics.fetch_add(1, Relaxed);
            self.flight.finish(Waited::Panicked);
        } else {
            self.inner.stats.takeovers.fetch_add(1, Relaxed);
            self.flight.finish(Waited::Abandoned);
        }
    }
}

/// Locks ignoring poison: our critical sections leave the maps consistent
/// even if a user `Clone` impl panics inside one.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
