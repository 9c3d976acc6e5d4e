//! Idle upstream connections, kept per thread slot and endpoint, bounded.
//!
//! A request takes an idle connection from the pool of the thread it runs on
//! and gives it back there, so with one current-thread runtime per core
//! ([`Gateway::run_per_core`](crate::Gateway::run_per_core)) a slot's mutex is
//! only ever taken by one thread: uncontended, held for a few list operations,
//! never across an `.await`.
//!
//! Bounds: at most [`MAX_SLOTS`] slots, [`MAX_ENDPOINTS`] endpoints per slot and
//! `max_idle` connections per endpoint and slot (`proxy.pool_max_idle_per_host`),
//! so at most `MAX_SLOTS * MAX_ENDPOINTS * max_idle` idle connections in all. A
//! full endpoint list drops its oldest connection for the new one (the oldest is
//! the likeliest to be closed by the upstream's own idle timeout); a connection
//! idle for `idle_timeout` is closed on the next take or give-back of its
//! endpoint (there is no background reaper, so an endpoint without traffic keeps
//! its bounded list until then).

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use tokio::time::Instant;

/// Most thread slots (threads beyond this share slots round-robin).
pub(super) const MAX_SLOTS: usize = 16;

/// Most endpoints with idle connections per slot; the least recently added
/// endpoint's connections are closed to make room for a new one.
pub(super) const MAX_ENDPOINTS: usize = 64;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot, assigned on first use (`usize::MAX` = not yet).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's slot number (not yet reduced modulo a pool's size).
pub(super) fn thread_slot() -> usize {
    SLOT.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

/// Idle values (connections) per thread slot and endpoint.
pub(super) struct IdlePool<T> {
    slots: Box<[Mutex<Slot<T>>]>,
    max_idle: usize,
    idle_timeout: Duration,
}

struct Slot<T> {
    /// Linear scan: a gateway proxies to a handful of endpoints.
    endpoints: Vec<Endpoint<T>>,
}

struct Endpoint<T> {
    authority: Authority,
    /// Oldest at the front; taken from the back (most recently used first).
    idle: VecDeque<Idle<T>>,
}

struct Idle<T> {
    value: T,
    since: Instant,
}

impl<T> IdlePool<T> {
    /// A pool with one slot per available core (at most [`MAX_SLOTS`]);
    /// `max_idle` 0 disables pooling.
    pub(super) fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_SLOTS);
        Self::with_slots(n, max_idle, idle_timeout)
    }

    fn with_slots(slots: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            slots: (0..slots.clamp(1, MAX_SLOTS))
                .map(|_| {
                    Mutex::new(Slot {
                        endpoints: Vec::new(),
                    })
                })
                .collect(),
            max_idle,
            idle_timeout,
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot<T>> {
        let m = &self.slots[thread_slot() % self.slots.len()];
        // The lists stay consistent across a panic (no invariant spans two
        // operations), so a poisoned lock is still usable.
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently given-back value for `authority` that has not been idle
    /// for `idle_timeout` and passes `usable`; the others it meets are dropped.
    pub(super) fn take(&self, authority: &Authority, usable: impl Fn(&T) -> bool) -> Option<T> {
        if self.max_idle == 0 {
            return None;
        }
        let mut slot = self.slot();
        let ep = slot
            .endpoints
            .iter_mut()
            .find(|e| e.authority == *authority)?;
        let back = ep.idle.back()?;
        let now = Instant::now();
        if now.saturating_duration_since(back.since) >= self.idle_timeout {
            // The newest is stale, so all are.
            ep.idle.clear();
            return None;
        }
        while let Some(idle) = ep.idle.pop_back() {
            if usable(&idle.value) {
                return Some(idle.value);
            }
        }
        None
    }

    /// Keeps `value` as idle for `authority`, within the bounds.
    pub(super) fn give_back(&self, authority: &Authority, value: T) {
        if self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut slot = self.slot();
        let i = match slot
            .endpoints
            .iter()
            .position(|e| e.authority == *authority)
        {
            Some(i) => i,
            None => {
                if slot.endpoints.len() >= MAX_ENDPOINTS {
                    // An endpoint with nothing idle goes first, else the oldest added.
                    let victim = slot
                        .endpoints
                        .iter()
                        .position(|e| e.idle.is_empty())
                        .unwrap_or(0);
                    slot.endpoints.remove(victim);
                }
                slot.endpoints.push(Endpoint {
                    authority: authority.clone(),
                    idle: VecDeque::new(),
                });
                slot.endpoints.len() - 1
            }
        };
        let ep = &mut slot.endpoints[i];
        while ep
            .idle
            .front()
            .is_some_and(|f| now.saturating_duration_since(f.since) >= self.idle_timeout)
        {
            ep.idle.pop_front();
        }
        if ep.idle.len() >= self.max_idle {
            ep.idle.pop_front();
        }
        ep.idle.push_back(Idle { value, since: now });
    }

    /// Idle values kept for `authority`, over all slots.
    #[cfg(test)]
    pub(super) fn idle_count(&self, authority: &Authority) -> usize {
        self.slots
            .iter()
            .map(|m| {
                let slot = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                slot.endpoints
                    .iter()
                    .filter(|e| e.authority == *authority)
                    .map(|e| e.idle.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Endpoints with a list in any slot.
    #[cfg(test)]
    fn endpoint_count(&self) -> usize {
        self.slots
            .iter()
            .map(|m| {
                m.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .endpoints
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn auth(port: u16) -> Authority {
        format!("127.0.0.1:{port}").parse().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn most_recent_first_and_the_per_endpoint_bound() {
        let pool = IdlePool::with_slots(1, 3, Duration::from_secs(90));
        let a = auth(1);
        for v in 0..5 {
            pool.give_back(&a, v);
        }
        // Bound 3: the two oldest (0, 1) were dropped for newer ones.
        assert_eq!(pool.idle_count(&a), 3);
        assert_eq!(pool.take(&a, |_| true), Some(4));
        // Unusable values are dropped on the way.
        assert_eq!(pool.take(&a, |v| *v != 3), Some(2));
        assert_eq!(pool.take(&a, |_| true), None);
        assert_eq!(pool.take(&auth(2), |_| true), None);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_closes_stale_values() {
        let pool = IdlePool::with_slots(1, 8, Duration::from_secs(90));
        let a = auth(1);
        pool.give_back(&a, 1);
        tokio::time::advance(Duration::from_secs(60)).await;
        pool.give_back(&a, 2);
        tokio::time::advance(Duration::from_secs(31)).await;
        // 1 is 91 s idle: dropped when 3 comes back; 2 (31 s) stays.
        pool.give_back(&a, 3);
        assert_eq!(pool.idle_count(&a), 2);
        tokio::time::advance(Duration::from_secs(90)).await;
        // The newest is stale: everything goes.
        assert_eq!(pool.take(&a, |_| true), None);
        assert_eq!(pool.idle_count(&a), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn endpoint_bound_and_disabled_pool() {
        let pool = IdlePool::with_slots(1, 2, Duration::from_secs(90));
        for port in 0..(MAX_ENDPOINTS as u16 + 10) {
            pool.give_back(&auth(port), port);
        }
        assert_eq!(pool.endpoint_count(), MAX_ENDPOINTS);
        // The first endpoints were evicted, the last ones kept.
        assert_eq!(pool.idle_count(&auth(0)), 0);
        assert_eq!(
            pool.take(&auth(MAX_ENDPOINTS as u16 + 9), |_| true),
            Some(MAX_ENDPOINTS as u16 + 9)
        );

        let off = IdlePool::with_slots(1, 0, Duration::from_secs(90));
        off.give_back(&auth(1), 1);
        assert_eq!(off.idle_count(&auth(1)), 0);
        assert_eq!(off.take(&auth(1), |_| true), None);
    }
}
