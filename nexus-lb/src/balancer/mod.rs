//! [`Balancer`]: the endpoint set, its updates, and picks.

mod builder;
mod health;

pub use builder::BalancerBuilder;
pub use health::CircuitState;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt};

use crate::endpoint::{Endpoint, EndpointHandle, EndpointSpec, EwmaSettings};
use crate::error::ConfigError;
use crate::ewma::Clock;
use crate::exclude::Exclude;
use crate::snapshot::Snapshot;
use crate::strategy::{PickState, Strategy, pick};
use crate::task::TaskHandle;

/// The most endpoints one balancer accepts.
pub const MAX_ENDPOINTS: usize = 4096;

/// What [`Balancer::set_endpoints`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetChange {
    /// Endpoints that were not in the previous set.
    pub added: usize,
    /// Endpoints of the previous set that are gone.
    pub removed: usize,
    /// Endpoints kept with a new weight.
    pub reweighted: usize,
}

impl SetChange {
    /// Whether anything changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A load balancer over a live set of endpoints.
///
/// Cheap to clone (one `Arc`). Picks read an immutable snapshot through an
/// atomic pointer and update only atomics: no lock, no allocation. Changes
/// (a new endpoint set, a circuit opening, a failed health check) build a
/// new snapshot under a writer-only mutex and swap it in; endpoints that stay
/// keep their counters, latency estimate and health across the swap.
#[derive(Debug, Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    strategy: Strategy,
    snapshot: ArcSwap<Snapshot>,
    pick: PickState,
    /// Serialises snapshot rebuilds; never taken by picks.
    writer: Mutex<()>,
    next_id: AtomicU64,
    default_rtt: Duration,
    ewma: EwmaSettings,
    clock: Clock,
}

impl Balancer {
    /// A balancer with `strategy` and default settings, and no endpoints.
    pub fn new(strategy: Strategy) -> Self {
        Self::builder()
            .strategy(strategy)
            .build()
            .unwrap_or_else(|_| unreachable!("default settings are valid"))
    }

    /// A builder with default settings.
    pub fn builder() -> BalancerBuilder {
        BalancerBuilder::default()
    }

    /// The picking strategy.
    pub fn strategy(&self) -> Strategy {
        self.inner.strategy
    }

    /// Picks an endpoint, or `None` when no endpoint is in rotation.
    #[inline]
    pub fn pick(&self) -> Option<EndpointHandle> {
        self.pick_excluding(&Exclude::new())
    }

    /// Picks an endpoint other than those in `exclude` when one is available
    /// (a retry after a failure); if all available endpoints are excluded,
    /// picks among them anyway.
    #[inline]
    pub fn pick_excluding(&self, exclude: &Exclude) -> Option<EndpointHandle> {
        let snap = self.inner.snapshot.load();
        pick(self.inner.strategy, &snap, &self.inner.pick, exclude)
            .map(|e| EndpointHandle(e.clone()))
    }

    /// Replaces the endpoint set. Endpoints whose URL stays keep their state
    /// (in-flight count, handled count, latency, health) and take the new
    /// weight; new ones start fresh; removed ones leave the rotation (requests
    /// already in flight to them complete normally).
    ///
    /// Errors (duplicate URL, too many endpoints) leave the set unchanged.
    pub fn set_endpoints(&self, specs: &[EndpointSpec]) -> Result<SetChange, ConfigError> {
        if specs.len() > MAX_ENDPOINTS {
            return Err(ConfigError::TooManyEndpoints {
                count: specs.len(),
                max: MAX_ENDPOINTS,
            });
        }
        let _w = self.lock_writer();
        let current = self.inner.snapshot.load_full();
        let mut old: HashMap<&str, &Arc<Endpoint>> =
            current.all.iter().map(|e| (&*e.url, e)).collect();
        let mut change = SetChange::default();
        let mut next = Vec::with_capacity(specs.len());
        let mut seen = std::collections::HashSet::with_capacity(specs.len());
        for spec in specs {
            if !seen.insert(spec.url()) {
                return Err(ConfigError::DuplicateEndpoint {
                    url: spec.url().to_owned(),
                });
            }
            match old.remove(spec.url()) {
                Some(e) => {
                    if e.weight.load(Ordering::Relaxed) != spec.weight() {
                        change.reweighted += 1;
                    }
                    next.push(e.clone());
                }
                None => {
                    change.added += 1;
                    next.push(Arc::new(self.new_endpoint(spec)));
                }
            }
        }
        change.removed = old.len();
        // Weights are applied only once the whole set is validated.
        for (e, spec) in next.iter().zip(specs) {
            e.weight.store(spec.weight(), Ordering::Relaxed);
        }
        self.inner
            .snapshot
            .store(Arc::new(Snapshot::build(next, self.inner.strategy)));
        Ok(change)
    }

    fn new_endpoint(&self, spec: &EndpointSpec) -> Endpoint {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Endpoint::new(
            id,
            spec,
            self.inner.clock.clone(),
            self.inner.default_rtt,
            self.inner.ewma,
        )
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: poisoning carries no broken invariant.
        self.inner.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-publishes the snapshot after an availability flag changed.
    fn rebuild(&self) {
        let _w = self.lock_writer();
        let current = self.inner.snapshot.load_full();
        let all = current.all.to_vec();
        self.inner
            .snapshot
            .store(Arc::new(Snapshot::build(all, self.inner.strategy)));
    }

    fn find(&self, key: &str) -> Option<Arc<Endpoint>> {
        self.inner
            .snapshot
            .load()
            .all
            .iter()
            .find(|e| &*e.url == key || e.authority.as_str() == key)
            .cloned()
    }

    /// Every configured endpoint, available or not.
    pub fn endpoints(&self) -> Vec<EndpointHandle> {
        self.inner
            .snapshot
            .load()
            .all
            .iter()
            .map(|e| EndpointHandle(e.clone()))
            .collect()
    }

    /// How many endpoints are in rotation.
    pub fn available(&self) -> usize {
        self.inner.snapshot.load().ready.len()
    }

    /// A point-in-time view for an `/lb-stats` endpoint.
    pub fn stats(&self) -> crate::stats::LbStats {
        let snap = self.inner.snapshot.load();
        let now = self.inner.clock.now_ms();
        crate::stats::LbStats::collect(
            self.inner.strategy,
            &snap.all,
            now,
            self.inner.ewma.decay_ms,
        )
    }

    /// Follows a discovery stream: each item is a whole endpoint set, applied
    /// with [`set_endpoints`](Self::set_endpoints). An invalid set is logged
    /// (`warn`) and skipped, keeping the previous one. The task ends when the
    /// stream ends or the handle is dropped.
    ///
    /// Must be called within a tokio runtime.
    pub fn spawn_discovery<S>(&self, stream: S) -> TaskHandle
    where
        S: Stream<Item = Vec<EndpointSpec>> + Send + 'static,
    {
        let balancer = self.clone();
        TaskHandle::new(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(set) = stream.next().await {
                match balancer.set_endpoints(&set) {
                    Ok(change) if !change.is_empty() => tracing::info!(
                        added = change.added,
                        removed = change.removed,
                        reweighted = change.reweighted,
                        total = set.len(),
                        "endpoint set updated"
                    ),
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "ignoring invalid endpoint set; keeping the previous one");
                    }
                }
            }
        }))
    }
}
