//! STAND-IN per-upstream circuit breaker, used until `nexus-breaker` is wired in.
//!
//! Rolling window of the last outcomes (bounded to [`MAX_WINDOW`] entries and
//! `window` in time); opens when the error percentage reaches the threshold with at
//! least `volume_threshold` calls; after `reset_timeout` admits one half-open probe;
//! closes on its success, re-opens on its failure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::seams::{
    AttemptOutcome, BreakerPermit, Breakers, CircuitListener, CircuitOpen, CircuitTransition,
};
use crate::config::BreakerSettings;

/// Most outcomes remembered per upstream.
pub(crate) const MAX_WINDOW: usize = 1024;
/// Most upstreams tracked (URLs come from `services.json`, so this is generous).
pub(crate) const MAX_UPSTREAMS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Circuit {
    state: State,
    window: VecDeque<(Instant, bool)>,
    opens: u64,
}

/// STAND-IN: per-upstream breakers.
pub struct StandInBreakers {
    cfg: BreakerSettings,
    // std Mutex: short critical sections, never held across `.await`.
    circuits: Mutex<HashMap<Arc<str>, Circuit>>,
    listener: Arc<dyn CircuitListener>,
}

impl std::fmt::Debug for StandInBreakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInBreakers")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

struct Permit {
    owner: Arc<StandInBreakers>,
    upstream: Arc<str>,
    probe: bool,
    done: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // A probe abandoned without an outcome (client went away) must not leave
        // the circuit half-open forever: let the next call probe instead.
        if self.probe && !self.done {
            let mut map = self
                .owner
                .circuits
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(c) = map.get_mut(&self.upstream) {
                if c.state == (State::HalfOpen { probing: true }) {
                    c.state = State::HalfOpen { probing: false };
                }
            }
        }
    }
}

impl StandInBreakers {
    /// New breakers reporting transitions to `listener`.
    pub fn new(cfg: BreakerSettings, listener: Arc<dyn CircuitListener>) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            circuits: Mutex::new(HashMap::new()),
            listener,
        })
    }

    fn record(&self, upstream: &Arc<str>, probe: bool, ok: bool) -> Option<CircuitTransition> {
        let now = Instant::now();
        let transition = {
            let mut map = self.circuits.lock().unwrap_or_else(|p| p.into_inner());
            let c = map.get_mut(upstream)?;
            match c.state {
                State::HalfOpen { .. } if probe => {
                    if ok {
                        c.state = State::Closed;
                        c.window.clear();
                        Some(CircuitTransition::Closed)
                    } else {
                        c.state = State::Open {
                            until: now + self.cfg.reset_timeout,
                        };
                        c.opens += 1;
                        Some(CircuitTransition::Opened)
                    }
                }
                State::Closed => {
                    if c.window.len() == MAX_WINDOW {
                        c.window.pop_front();
                    }
                    c.window.push_back((now, ok));
                    while c
                        .window
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > self.cfg.window)
                    {
                        c.window.pop_front();
                    }
                    let total = c.window.len() as u64;
                    let failed = c.window.iter().filter(|(_, ok)| !ok).count() as u64;
                    if total >= u64::from(self.cfg.volume_threshold.get())
                        && failed * 100 >= u64::from(self.cfg.error_threshold_percent) * total
                    {
                        c.state = State::Open {
                            until: now + self.cfg.reset_timeout,
                        };
                        c.opens += 1;
                        Some(CircuitTransition::Opened)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(t) = transition {
            self.listener.on_transition(upstream, t);
        }
        transition
    }
}

impl BreakerPermit for Permit {
    fn record(mut self: Box<Self>, outcome: AttemptOutcome) -> Option<CircuitTransition> {
        self.done = true;
        self.owner.record(
            &self.upstream,
            self.probe,
            outcome == AttemptOutcome::Success,
        )
    }
}

/// Breakers are shared behind an `Arc` so permits can refer back to them.
#[derive(Debug, Clone)]
pub struct SharedStandInBreakers(pub Arc<StandInBreakers>);

impl Breakers for SharedStandInBreakers {
    fn admit(&self, upstream: &Arc<str>) -> Result<Box<dyn BreakerPermit>, CircuitOpen> {
        let now = Instant::now();
        let mut half_opened = false;
        let probe = {
            let mut map = self.0.circuits.lock().unwrap_or_else(|p| p.into_inner());
            if !map.contains_key(upstream) && map.len() >= MAX_UPSTREAMS {
                return Ok(Box::new(Permit {
                    owner: self.0.clone(),
                    upstream: upstream.clone(),
                    probe: false,
                    done: false,
                }));
            }
            let c = map.entry(upstream.clone()).or_insert_with(|| Circuit {
                state: State::Closed,
                window: VecDeque::new(),
                opens: 0,
            });
            match c.state {
                State::Closed => false,
                State::Open { until } if now >= until => {
                    c.state = State::HalfOpen { probing: true };
                    half_opened = true;
                    true
                }
                State::HalfOpen { probing: false } => {
                    c.state = State::HalfOpen { probing: true };
                    true
                }
                State::Open { .. } | State::HalfOpen { probing: true } => return Err(CircuitOpen),
            }
        };
        if half_opened {
            self.0
                .listener
                .on_transition(upstream, CircuitTransition::HalfOpened);
        }
        Ok(Box::new(Permit {
            owner: self.0.clone(),
            upstream: upstream.clone(),
            probe,
            done: false,
        }))
    }

    fn stats(&self) -> serde_json::Value {
        let map = self.0.circuits.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let circuits: Vec<_> = map
            .iter()
            .map(|(url, c)| {
                let failed = c.window.iter().filter(|(_, ok)| !ok).count();
                serde_json::json!({
                    "upstream": &**url,
                    "state": match c.state {
                        State::Closed => "closed",
                        State::Open { until } if now >= until => "half_open_pending",
                        State::Open { .. } => "open",
                        State::HalfOpen { .. } => "half_open",
                    },
                    "window_calls": c.window.len(),
                    "window_failures": failed,
                    "opens": c.opens,
                })
            })
            .collect();
        serde_json::json!({ "implementation": "stand-in", "circuits": circuits })
    }
}
