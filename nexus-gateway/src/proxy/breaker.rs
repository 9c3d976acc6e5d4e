//! [`Breakers`] over `nexus-breaker`: one breaker per upstream URL in a bounded
//! registry; transitions go to the gateway's [`CircuitListener`].

use std::sync::Arc;

use nexus_breaker::{Breaker, BreakerConfig, BreakerRegistry, Outcome, Permit, State, Transition};

use super::seams::{
    AttemptOutcome, BreakerPermit, Breakers, CircuitListener, CircuitOpen, CircuitTransition,
};
use crate::config::{BreakerSettings, ConfigError};

/// Most upstreams with a breaker (URLs come from `services.json`).
pub const MAX_BREAKERS: usize = 4096;

/// Per-upstream `nexus-breaker` breakers.
#[derive(Clone)]
pub struct NexusBreakers {
    registry: BreakerRegistry,
}

impl std::fmt::Debug for NexusBreakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NexusBreakers").finish_non_exhaustive()
    }
}

impl NexusBreakers {
    /// Builds the registry. The proxy applies its own call timeout, so the
    /// breaker's is off; timeouts reach the breaker as failures.
    pub fn new(
        s: &BreakerSettings,
        listener: Arc<dyn CircuitListener>,
    ) -> Result<Self, ConfigError> {
        let mut config = BreakerConfig::default();
        config.error_threshold_percent = s.error_threshold_percent;
        config.volume_threshold = s.volume_threshold;
        config.reset_timeout = s.reset_timeout;
        config.call_timeout = None;
        config.window = s.window;
        let forward = move |t: &Transition| {
            let transition = match t.to {
                State::Open => CircuitTransition::Opened,
                State::HalfOpen => CircuitTransition::HalfOpened,
                State::Closed => CircuitTransition::Closed,
            };
            listener.on_transition(&t.endpoint, transition);
        };
        let registry = BreakerRegistry::new(config, Some(Arc::new(forward)), MAX_BREAKERS)
            .map_err(|e| ConfigError::invalid("breaker", e.to_string()))?;
        Ok(Self { registry })
    }
}

struct NexusPermit {
    permit: Option<Permit>,
    breaker: Breaker,
}

impl BreakerPermit for NexusPermit {
    fn record(mut self: Box<Self>, outcome: AttemptOutcome) -> Option<CircuitTransition> {
        let before = self.breaker.state();
        let permit = self.permit.take()?;
        permit.record(match outcome {
            AttemptOutcome::Success => Outcome::Success,
            AttemptOutcome::Failure | AttemptOutcome::BodyFailure => Outcome::Failure,
            AttemptOutcome::Ignored => Outcome::Ignore,
        });
        // This call's outcome tripped the circuit (used to attribute the event
        // to the request; the listener also hears the transition).
        (before != State::Open && self.breaker.state() == State::Open)
            .then_some(CircuitTransition::Opened)
    }
}

struct Unguarded;

impl BreakerPermit for Unguarded {
    fn record(self: Box<Self>, _outcome: AttemptOutcome) -> Option<CircuitTransition> {
        None
    }
}

impl Breakers for NexusBreakers {
    fn admit(&self, upstream: &Arc<str>) -> Result<Box<dyn BreakerPermit>, CircuitOpen> {
        let Ok(breaker) = self.registry.get_or_insert(upstream) else {
            // Registry full: more upstreams than MAX_BREAKERS; call unguarded.
            return Ok(Box::new(Unguarded));
        };
        match breaker.acquire() {
            Ok(permit) => Ok(Box::new(NexusPermit {
                permit: Some(permit),
                breaker,
            })),
            Err(_) => Err(CircuitOpen),
        }
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::json!({ "circuits": self.registry.snapshots() })
    }

    fn forget(&self, upstream: &Arc<str>) {
        self.registry.remove(upstream);
    }

    fn record_failure(&self, upstream: &Arc<str>) {
        // An open circuit refuses the permit: it is already out of rotation.
        if let Some(b) = self.registry.get(upstream)
            && let Ok(permit) = b.acquire()
        {
            permit.failure();
        }
    }
}
