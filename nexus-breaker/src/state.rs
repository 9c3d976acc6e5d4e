//! Breaker states, transitions and the listener that hears about them.

use std::sync::Arc;

use crate::WindowCounts;

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Calls flow; outcomes are counted.
    Closed,
    /// Calls are refused without reaching the upstream.
    Open,
    /// A limited number of probe calls test the upstream.
    HalfOpen,
}

impl State {
    /// Value for the `nexus_circuit_breaker_state` gauge: 0 closed, 1 open,
    /// 2 half-open.
    pub const fn as_gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// Lower-case name (`closed`, `open`, `half_open`).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    pub(crate) const fn to_u8(self) -> u8 {
        self.as_gauge() as u8
    }

    pub(crate) const fn from_u8(v: u8) -> Self {
        match v {
            1 => State::Open,
            2 => State::HalfOpen,
            _ => State::Closed,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Transition {
    /// The breaker's endpoint name.
    pub endpoint: Arc<str>,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Window counts that led to the change (when opening from closed).
    pub window: WindowCounts,
}

/// Hears every state change of the breakers it is given to, in the order
/// they happen (for events, logs and the state gauge).
///
/// Called synchronously right after the change, outside the breaker's state
/// lock (it may read [`Breaker::snapshot`](crate::Breaker::snapshot)); keep
/// it cheap and non-blocking. Closures `Fn(&Transition)` implement it.
pub trait Listener: Send + Sync + 'static {
    /// Handles one transition.
    fn on_transition(&self, transition: &Transition);
}

impl<F> Listener for F
where
    F: Fn(&Transition) + Send + Sync + 'static,
{
    fn on_transition(&self, transition: &Transition) {
        self(transition)
    }
}
