//! [`BalancerBuilder`]: validated balancer settings.

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Balancer, Inner};
use crate::endpoint::EwmaSettings;
use crate::error::ConfigError;
use crate::ewma::Clock;
use crate::rng::SplitMix;
use crate::snapshot::Snapshot;
use crate::strategy::{PickState, Strategy};

/// Builds a [`Balancer`].
#[derive(Debug, Clone)]
pub struct BalancerBuilder {
    strategy: Strategy,
    seed: Option<u64>,
    default_rtt: Duration,
    decay: Duration,
    failure_penalty: Duration,
}

impl Default for BalancerBuilder {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            seed: None,
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(10),
            failure_penalty: Duration::from_secs(1),
        }
    }
}

impl BalancerBuilder {
    /// The picking strategy (default: smooth weighted round robin).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Seeds the random source of P2C, for reproducible picks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Latency assumed for an endpoint before its first response (default 30 ms).
    pub fn default_rtt(mut self, rtt: Duration) -> Self {
        self.default_rtt = rtt;
        self
    }

    /// Decay period of the peak-EWMA latency (default 10 s).
    pub fn ewma_decay(mut self, decay: Duration) -> Self {
        self.decay = decay;
        self
    }

    /// Latency recorded for a failed request that failed faster than this
    /// (default 1 s), so failing fast does not attract traffic.
    pub fn failure_penalty(mut self, penalty: Duration) -> Self {
        self.failure_penalty = penalty;
        self
    }

    /// Validates the settings and builds an empty balancer. Time is tokio
    /// time (a paused test clock applies when built inside that runtime).
    pub fn build(self) -> Result<Balancer, ConfigError> {
        if self.decay < Duration::from_millis(1) {
            return Err(ConfigError::Invalid {
                field: "ewma_decay",
                reason: "must be at least 1 ms",
            });
        }
        if self.default_rtt.is_zero() {
            return Err(ConfigError::Invalid {
                field: "default_rtt",
                reason: "must be positive",
            });
        }
        let clock = Clock::new();
        let decay_ms = self.decay.as_millis() as f32;
        Ok(Balancer {
            inner: Arc::new(Inner {
                strategy: self.strategy,
                snapshot: ArcSwap::from_pointee(Snapshot::empty()),
                pick: PickState {
                    cursor: AtomicUsize::new(0),
                    rng: SplitMix::new(self.seed.unwrap_or_else(SplitMix::entropy)),
                    clock: clock.clone(),
                    decay_ms,
                },
                writer: Mutex::new(()),
                next_id: AtomicU64::new(1),
                default_rtt: self.default_rtt,
                ewma: EwmaSettings {
                    decay_ms,
                    failure_penalty: self.failure_penalty,
                },
                clock,
            }),
        })
    }
}
