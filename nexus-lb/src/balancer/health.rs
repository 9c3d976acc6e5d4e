//! Passive and active health: taking endpoints out of rotation and back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Balancer;
use crate::endpoint::Endpoint;

/// State of an endpoint's circuit breaker, as reported by the breaker's
/// state listener (passive health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests flow normally.
    Closed,
    /// The breaker fails fast: the endpoint leaves the rotation.
    Open,
    /// The breaker admits probes: the endpoint is back in rotation so that
    /// probes can reach it.
    HalfOpen,
}

impl Balancer {
    /// Passive health: reports the circuit-breaker state of the endpoint
    /// whose URL (`http://host:port`) or authority (`host:port`) is `key`.
    /// An open circuit takes the endpoint out of rotation until the breaker
    /// reports half-open or closed. Returns `false` for an unknown endpoint.
    ///
    /// A breaker that moves to half-open lazily (on the next call after its
    /// reset timeout) never sees that call if the endpoint is out of
    /// rotation: use [`set_circuit_open_for`](Self::set_circuit_open_for)
    /// with the breaker's reset timeout for such breakers.
    pub fn set_circuit_state(&self, key: &str, state: CircuitState) -> bool {
        let Some(e) = self.find(key) else {
            return false;
        };
        e.circuit_gen.fetch_add(1, Ordering::AcqRel);
        self.apply_circuit(&e, state == CircuitState::Open, state);
        true
    }

    /// Passive health for breakers that go half-open lazily: takes the
    /// endpoint out of rotation now and puts it back after `reset_timeout`,
    /// so that the next call reaches the breaker and becomes its half-open
    /// probe. A later report (open again, closed) supersedes the timer.
    ///
    /// The readmission timer is a tokio task; outside a runtime the endpoint
    /// stays out until the next report. Returns `false` for an unknown
    /// endpoint.
    pub fn set_circuit_open_for(&self, key: &str, reset_timeout: Duration) -> bool {
        let Some(e) = self.find(key) else {
            return false;
        };
        let generation = e.circuit_gen.fetch_add(1, Ordering::AcqRel) + 1;
        self.apply_circuit(&e, true, CircuitState::Open);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(endpoint = %e.url, "no tokio runtime: the endpoint stays out of rotation until its breaker reports again");
            return true;
        };
        // Weak: a pending timer does not keep a dropped balancer alive. At
        // most one live timer per endpoint matters; stale ones see a newer
        // generation and do nothing.
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            tokio::time::sleep(reset_timeout).await;
            let Some(inner) = weak.upgrade() else { return };
            if e.circuit_gen.load(Ordering::Acquire) == generation {
                Balancer { inner }.apply_circuit(&e, false, CircuitState::HalfOpen);
            }
        });
        true
    }

    fn apply_circuit(&self, e: &Arc<Endpoint>, open: bool, state: CircuitState) {
        if e.circuit_open.swap(open, Ordering::AcqRel) != open {
            tracing::info!(endpoint = %e.url, ?state, "circuit state changed; rotation updated");
            self.rebuild();
        }
    }

    /// Active health: marks endpoint `id` healthy or not (used by the
    /// health checker). Returns `false` for an unknown endpoint.
    pub(crate) fn set_probe_health(&self, id: u64, healthy: bool) -> bool {
        let snap = self.inner.snapshot.load();
        let Some(e) = snap.all.iter().find(|e| e.id == id).cloned() else {
            return false;
        };
        drop(snap);
        if e.probe_healthy.swap(healthy, Ordering::AcqRel) != healthy {
            if healthy {
                tracing::info!(endpoint = %e.url, "health checks pass; endpoint back in rotation");
            } else {
                tracing::warn!(endpoint = %e.url, "health checks fail; endpoint out of rotation");
            }
            self.rebuild();
        }
        true
    }
}
