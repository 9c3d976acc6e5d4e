//! The `/lb-stats` view.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::endpoint::Endpoint;
use crate::strategy::Strategy;

/// A point-in-time view of a balancer, serialisable as `/lb-stats` JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LbStats {
    /// The strategy's name (see [`Strategy::as_str`]).
    pub strategy: &'static str,
    /// One entry per configured endpoint, in configuration order.
    pub endpoints: Vec<EndpointStats>,
}

/// One endpoint in [`LbStats`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndpointStats {
    /// Normalised URL.
    pub url: String,
    /// Current weight.
    pub weight: u32,
    /// Requests in flight (the seed's `activeConnections`).
    pub in_flight: u32,
    /// Requests completed (the seed's `requestsHandled`).
    pub handled: u64,
    /// Requests that failed with a transport error.
    pub failed: u64,
    /// In rotation: circuit not open and health checks passing.
    pub healthy: bool,
    /// Passive health: the circuit breaker reported open.
    pub circuit_open: bool,
    /// Active health: the last health checks passed (true when not checked).
    pub probe_healthy: bool,
    /// Peak-EWMA latency estimate, milliseconds, decayed to now.
    pub ewma_ms: f64,
}

impl LbStats {
    pub(crate) fn collect(
        strategy: Strategy,
        all: &[Arc<Endpoint>],
        now_ms: u32,
        decay_ms: f32,
    ) -> Self {
        let endpoints = all
            .iter()
            .map(|e| EndpointStats {
                url: e.url.to_string(),
                weight: e.weight.load(Ordering::Relaxed),
                in_flight: e.in_flight.load(Ordering::Relaxed),
                handled: e.handled.load(Ordering::Relaxed),
                failed: e.failed.load(Ordering::Relaxed),
                healthy: e.is_available(),
                circuit_open: e.circuit_open.load(Ordering::Relaxed),
                probe_healthy: e.probe_healthy.load(Ordering::Relaxed),
                ewma_ms: f64::from(e.ewma.estimate_ns(now_ms, decay_ms)) / 1e6,
            })
            .collect();
        Self {
            strategy: strategy.as_str(),
            endpoints,
        }
    }
}
