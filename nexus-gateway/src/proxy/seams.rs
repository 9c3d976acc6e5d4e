//! The seams where balancing and circuit breaking plug into the proxy.
//!
//! The proxy drives attempts itself (pick -> breaker admit -> timeout -> call ->
//! record), so any balancer and any breaker fit behind these two object-safe
//! traits. Implementations must be cheap and non-blocking: they run on the request
//! path.

use std::sync::Arc;

use http::uri::{Authority, Scheme};

/// Outcome of one upstream attempt, as reported to the balancer and breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response below 500 arrived.
    Success,
    /// Transport error, timeout or 5xx.
    Failure,
    /// The attempt failed through the client's fault (its request body was
    /// malformed, stalled or cut off): counted neither way.
    Ignored,
    /// The response head had arrived (reported as [`Success`](Self::Success)),
    /// then its streamed body failed through the upstream's fault: a failure,
    /// without a latency sample (the attempt's age is the stream's length).
    BodyFailure,
}

/// In-flight tracking for one attempt on one endpoint: the attempt is in
/// flight until the guard is dropped (a streamed response body keeps it).
pub trait AttemptGuard: Send {
    /// Reports an outcome (and the latency the balancer may use for EWMA).
    /// Called once when the response head arrives or the call fails, and
    /// once more with [`AttemptOutcome::BodyFailure`] if a streamed response body
    /// then fails through the upstream's fault.
    fn record(&mut self, outcome: AttemptOutcome, latency: std::time::Duration);

    /// Reports the outcome and ends the attempt.
    fn finish(mut self: Box<Self>, outcome: AttemptOutcome, latency: std::time::Duration) {
        self.record(outcome, latency);
    }
}

/// An endpoint chosen for one attempt.
pub struct Picked {
    /// Stable id used to avoid re-picking it within one request.
    pub id: u64,
    /// Base URL as written in `services.json` (also the metrics label).
    pub url: Arc<str>,
    /// Scheme of the endpoint.
    pub scheme: Scheme,
    /// Authority of the endpoint.
    pub authority: Authority,
    /// In-flight guard.
    pub guard: Box<dyn AttemptGuard>,
}

impl std::fmt::Debug for Picked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picked")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish()
    }
}

/// A set of upstream endpoints with a balancing strategy.
pub trait Upstreams: Send + Sync + 'static {
    /// Picks an endpoint not in `exclude` (falls back to any available endpoint
    /// when all are excluded); `None` when no endpoint is available.
    fn pick(&self, exclude: &[u64]) -> Option<Picked>;
    /// Tells the balancer an endpoint's circuit state changed (passive health).
    fn circuit_changed(&self, url: &str, open: bool);
    /// `/lb-stats` document.
    fn stats(&self) -> serde_json::Value;
    /// Whether `url` is in the current endpoint set (a call to an endpoint
    /// that discovery removed may still be finishing).
    fn contains(&self, _url: &str) -> bool {
        true
    }
}

/// The circuit of an upstream is open: fail fast without an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open")]
pub struct CircuitOpen;

/// Permission to make one call through a breaker; told the outcome once.
pub trait BreakerPermit: Send {
    /// Records the outcome; returns the transition it caused, if any (the proxy
    /// emits `gateway.circuit.opened` with the tripping request's method and path).
    fn record(self: Box<Self>, outcome: AttemptOutcome) -> Option<CircuitTransition>;
}

/// Per-upstream circuit breakers.
pub trait Breakers: Send + Sync + 'static {
    /// Admits a call to `upstream` or fails fast.
    fn admit(&self, upstream: &Arc<str>) -> Result<Box<dyn BreakerPermit>, CircuitOpen>;
    /// `/cb-stats` document.
    fn stats(&self) -> serde_json::Value;
    /// Counts a failure noticed after the call's outcome was recorded (an
    /// upstream response body that stalled or broke off mid-stream).
    fn record_failure(&self, _upstream: &Arc<str>) {}
    /// Drops the breaker of an upstream that left the endpoint set, so it
    /// no longer shows in `/cb-stats` (a later call starts a fresh one).
    fn forget(&self, _upstream: &Arc<str>) {}
}

/// Circuit state transitions, reported by a [`Breakers`] implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitTransition {
    /// Closed or half-open -> open.
    Opened,
    /// Open -> half-open.
    HalfOpened,
    /// Half-open -> closed.
    Closed,
}

/// Receives circuit transitions (the gateway turns them into metrics, events and
/// balancer health).
pub trait CircuitListener: Send + Sync + 'static {
    /// Called on every transition; must not block.
    fn on_transition(&self, upstream: &Arc<str>, transition: CircuitTransition);
}
