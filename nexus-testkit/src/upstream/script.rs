//! What an [`HttpUpstream`](super::HttpUpstream) answers: the scripted
//! response, injected faults, and the record of what it received.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri};

/// How many received requests an upstream remembers (oldest dropped first).
pub const REQUEST_LOG_CAPACITY: usize = 256;

/// Request bodies are recorded up to this many bytes; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The scripted behaviour, changeable while the upstream runs.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) content_type: &'static str,
    pub(crate) latency: Duration,
    /// Share of requests, in `[0, 1]`, answered with `failure_status`.
    pub(crate) failure_rate: f64,
    pub(crate) failure_status: StatusCode,
    /// Close the connection without answering (the client sees a reset).
    pub(crate) abort: bool,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            body: Bytes::from_static(br#"{"ok":true}"#),
            content_type: "application/json",
            latency: Duration::ZERO,
            failure_rate: 0.0,
            failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            abort: false,
        }
    }
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// Request target as sent (path and query).
    pub uri: Uri,
    /// Request headers as received.
    pub headers: HeaderMap,
    /// Request body (at most [`MAX_BODY_BYTES`]).
    pub body: Bytes,
}

/// State shared by the handle and every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    script: Mutex<Script>,
    requests: AtomicU64,
    log: Mutex<VecDeque<RecordedRequest>>,
    rng: AtomicU64,
}

impl Shared {
    pub(crate) fn new(name: String, script: Script, seed: u64) -> Self {
        Self {
            name,
            script: Mutex::new(script),
            requests: AtomicU64::new(0),
            log: Mutex::new(VecDeque::with_capacity(REQUEST_LOG_CAPACITY)),
            rng: AtomicU64::new(seed),
        }
    }

    /// A copy of the current script (cheap: the body is reference-counted).
    pub(crate) fn script(&self) -> Script {
        lock(&self.script).clone()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut Script)) {
        change(&mut lock(&self.script));
    }

    pub(crate) fn record(&self, request: RecordedRequest) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut log = lock(&self.log);
        if log.len() == REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(request);
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn recorded(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().cloned().collect()
    }

    pub(crate) fn last(&self) -> Option<RecordedRequest> {
        lock(&self.log).back().cloned()
    }

    pub(crate) fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        lock(&self.log).clear();
    }

    /// Whether this request is picked to fail, drawing from the seeded generator.
    pub(crate) fn roll_failure(&self, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        unit_f64(splitmix64(
            self.rng.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed),
        )) < rate
    }
}

/// Locks a mutex that only guards plain data: a poisoned lock still holds valid data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64 finaliser: one step of a seedable, lock-free generator.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(GOLDEN_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 64 random bits to `[0, 1)` using the top 53 bits.
fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1_u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_share_follows_the_rate_and_the_seed() {
        let a = Shared::new("a".into(), Script::default(), 7);
        let b = Shared::new("b".into(), Script::default(), 7);
        let rolls_a: Vec<bool> = (0..10_000).map(|_| a.roll_failure(0.3)).collect();
        let rolls_b: Vec<bool> = (0..10_000).map(|_| b.roll_failure(0.3)).collect();
        assert_eq!(rolls_a, rolls_b, "same seed, same sequence");
        let failures = rolls_a.iter().filter(|f| **f).count();
        assert!((2_700..3_300).contains(&failures), "{failures} of 10000");
    }

    #[test]
    fn request_log_is_bounded() {
        let shared = Shared::new("a".into(), Script::default(), 1);
        for i in 0..REQUEST_LOG_CAPACITY + 10 {
            shared.record(RecordedRequest {
                method: Method::GET,
                uri: Uri::from_static("/"),
                headers: HeaderMap::new(),
                body: Bytes::from(i.to_string()),
            });
        }
        assert_eq!(shared.requests(), (REQUEST_LOG_CAPACITY + 10) as u64);
        let log = shared.recorded();
        assert_eq!(log.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(log[0].body, Bytes::from("10"));
    }
}
