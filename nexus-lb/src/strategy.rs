//! The four picking strategies, each O(1) (least-outstanding: O(n) atomic
//! loads, no lock) and allocation-free over an immutable [`Snapshot`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::endpoint::Endpoint;
use crate::exclude::Exclude;
use crate::rng::{SplitMix, below};
use crate::snapshot::Snapshot;
use crate::wrr::{Wrr, step};

/// How the balancer chooses an endpoint for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Cycle through available endpoints in order; weights are ignored.
    #[serde(alias = "rr")]
    RoundRobin,
    /// The endpoint with the fewest requests in flight per unit of weight
    /// (ties broken at random). Scans the available endpoints: n relaxed
    /// atomic loads, no lock.
    #[serde(alias = "least_connections", alias = "lc")]
    LeastOutstanding,
    /// nginx's smooth weighted round robin: each endpoint gets
    /// `weight / sum(weights)` of the picks, interleaved rather than in bursts.
    #[default]
    #[serde(alias = "wrr")]
    WeightedRoundRobin,
    /// Power of two choices: two random available endpoints, the one with the
    /// lower `peak_ewma_latency × (in_flight + 1) / weight` wins (the cost of
    /// `tower::load::PeakEwma`, divided by weight).
    #[serde(alias = "p2c")]
    P2cPeakEwma,
}

/// An unknown strategy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balancing strategy {0:?} (expected round_robin, least_outstanding, weighted_round_robin or p2c_peak_ewma)"
)]
pub struct UnknownStrategy(pub String);

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    /// Accepts the names of [`Strategy::as_str`] and the aliases `rr`,
    /// `least_connections`, `lc`, `wrr`, `p2c` (case-insensitive, `-` or `_`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Ok(match norm.as_str() {
            "round_robin" | "rr" => Strategy::RoundRobin,
            "least_outstanding" | "least_connections" | "lc" => Strategy::LeastOutstanding,
            "weighted_round_robin" | "wrr" => Strategy::WeightedRoundRobin,
            "p2c_peak_ewma" | "p2c" => Strategy::P2cPeakEwma,
            _ => return Err(UnknownStrategy(s.to_owned())),
        })
    }
}

impl Strategy {
    /// The strategy's name as used in configuration and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastOutstanding => "least_outstanding",
            Strategy::WeightedRoundRobin => "weighted_round_robin",
            Strategy::P2cPeakEwma => "p2c_peak_ewma",
        }
    }
}

/// Mutable-by-atomics picker state shared by all picks of one balancer.
#[derive(Debug)]
pub(crate) struct PickState {
    pub(crate) cursor: AtomicUsize,
    pub(crate) rng: SplitMix,
    pub(crate) clock: crate::ewma::Clock,
    pub(crate) decay_ms: f32,
}

impl PickState {
    fn next_cursor(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }
}

/// Picks from `snap` under `strategy`, avoiding `exclude` unless every
/// available endpoint is excluded (then retrying one beats failing).
pub(crate) fn pick<'a>(
    strategy: Strategy,
    snap: &'a Snapshot,
    st: &PickState,
    exclude: &Exclude,
) -> Option<&'a Arc<Endpoint>> {
    let ready = &snap.ready[..];
    match ready.len() {
        0 => return None,
        1 => return ready.first(),
        _ => {}
    }
    match strategy {
        Strategy::RoundRobin => {
            let start = st.next_cursor();
            Some(first_allowed(ready, start, exclude))
        }
        Strategy::WeightedRoundRobin => Some(wrr(snap, st, exclude)),
        Strategy::LeastOutstanding => {
            // A random start breaks ties evenly even when the busy endpoints
            // sit next to each other (a rotating start would favour the
            // idle endpoint right after them).
            #[allow(clippy::cast_possible_truncation)]
            let start = below(st.rng.next_u64() as u32, ready.len());
            Some(least_outstanding(ready, start, exclude))
        }
        Strategy::P2cPeakEwma => Some(p2c(ready, st, exclude)),
    }
}

/// `ready[start..]` then `ready[..start]`: one pass from `start`, without a
/// division per step.
fn rotated(ready: &[Arc<Endpoint>], start: usize) -> impl Iterator<Item = &Arc<Endpoint>> {
    let (head, tail) = ready.split_at(start);
    tail.iter().chain(head)
}

/// `ready[start % n]`, or the next one not excluded.
fn first_allowed<'a>(
    ready: &'a [Arc<Endpoint>],
    start: usize,
    exclude: &Exclude,
) -> &'a Arc<Endpoint> {
    let start = start % ready.len();
    let first = &ready[start];
    if exclude.is_empty() {
        return first;
    }
    rotated(ready, start)
        .find(|e| !exclude.contains(e.id))
        .unwrap_or(first)
}

fn wrr<'a>(snap: &'a Snapshot, st: &PickState, exclude: &Exclude) -> &'a Arc<Endpoint> {
    let ready = &snap.ready[..];
    match &snap.wrr {
        Wrr::Table(table) => {
            let len = table.len();
            let start = st.next_cursor() % len;
            let at = |k: usize| &ready[usize::from(table[(start + k) % len])];
            let first = at(0);
            if exclude.is_empty() || !exclude.contains(first.id) {
                return first;
            }
            (1..len)
                .map(at)
                .find(|e| !exclude.contains(e.id))
                .unwrap_or(first)
        }
        Wrr::Live(peers) => {
            // A poisoned lock only means another picker panicked mid-step; the
            // weights are still valid, so keep going.
            let mut peers = peers.lock().unwrap_or_else(|p| p.into_inner());
            let total = peers.iter().map(|p| p.0).sum();
            let i = step(&mut peers, total);
            drop(peers);
            first_allowed(ready, i, exclude)
        }
        // Built for every WRR snapshot with ready endpoints; fall back to RR.
        Wrr::Empty => first_allowed(ready, st.next_cursor(), exclude),
    }
}

fn least_outstanding<'a>(
    ready: &'a [Arc<Endpoint>],
    start: usize,
    exclude: &Exclude,
) -> &'a Arc<Endpoint> {
    // (in_flight + 1, weight): compared as fractions without division.
    #[inline]
    fn load(e: &Endpoint) -> (u64, u64) {
        (
            u64::from(e.in_flight.load(Ordering::Relaxed)) + 1,
            u64::from(e.weight.load(Ordering::Relaxed)),
        )
    }
    let mut best: Option<(&Arc<Endpoint>, u64, u64)> = None;
    if exclude.is_empty() {
        // Hot path: two plain loops (no chained iterator, no exclusion test).
        let (head, tail) = ready.split_at(start);
        let mut b = &ready[start];
        let (mut bl, mut bw) = load(b);
        for part in [&tail[1..], head] {
            for e in part {
                let (l, w) = load(e);
                if l * bw < bl * w {
                    (b, bl, bw) = (e, l, w);
                }
            }
        }
        return b;
    }
    for e in rotated(ready, start) {
        if exclude.contains(e.id) {
            continue;
        }
        let (l, w) = load(e);
        match best {
            Some((_, bl, bw)) if l * bw >= bl * w => {}
            _ => best = Some((e, l, w)),
        }
    }
    best.map_or(&ready[start], |b| b.0)
}

fn cost(e: &Endpoint, now_ms: u32, decay_ms: f32) -> f32 {
    let est = e.ewma.estimate_ns(now_ms, decay_ms);
    let pending = e.in_flight.load(Ordering::Relaxed) as f32 + 1.0;
    let weight = e.weight.load(Ordering::Relaxed) as f32;
    est * pending / weight
}

fn p2c<'a>(ready: &'a [Arc<Endpoint>], st: &PickState, exclude: &Exclude) -> &'a Arc<Endpoint> {
    let n = ready.len();
    let r = st.rng.next_u64();
    #[allow(clippy::cast_possible_truncation)]
    let (hi, lo) = ((r >> 32) as u32, r as u32);
    let a = below(hi, n);
    let mut b = below(lo, n - 1);
    if b >= a {
        b += 1;
    }
    let (ea, eb) = (&ready[a], &ready[b]);
    match (exclude.contains(ea.id), exclude.contains(eb.id)) {
        (false, false) => {}
        (true, false) => return eb,
        (false, true) => return ea,
        (true, true) => return first_allowed(ready, a, exclude),
    }
    let now = st.clock.coarse_ms();
    if cost(eb, now, st.decay_ms) < cost(ea, now, st.decay_ms) {
        eb
    } else {
        ea
    }
}
