//! The breaker handle: a cheap gate on the data path and a policy behind a lock.
//!
//! The gate ([`Breaker::acquire`]) reads one atomic state byte; while closed
//! that is all a call pays before it starts. A success while closed is one
//! atomic increment in the current window bucket. Failures, bucket rollover
//! and every transition go through the policy ([`Permit::record`]): a short
//! critical section (never held across an await). Open → half-open
//! happens lazily on the first call after the reset timeout, so no timer task
//! is needed.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::window::Window;
use crate::{BreakerConfig, ConfigError, Error, Listener, State, Transition, WindowCounts};

/// A circuit breaker for one endpoint. Cheap to clone (an `Arc`); clones
/// share state.
///
/// Use it directly (acquire a [`Permit`], run the call, record the outcome)
/// or through [`BreakerLayer`](crate::BreakerLayer).
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Arc<str>,
    config: BreakerConfig,
    origin: Instant,
    /// `State` as u8: the data-path gate.
    state: AtomicU8,
    /// Nanoseconds since `origin` after which an open breaker admits probes.
    open_until: AtomicU64,
    /// Probe slots left while half-open.
    probes: AtomicU32,
    /// Bumped on every transition; permits from an older period are not
    /// counted towards the current state's decision.
    generation: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    /// Rolling window; its buckets are atomics (see [`Window`]).
    window: Window,
    policy: Mutex<Policy>,
    /// Serializes listener calls so they arrive in transition order.
    notify: Mutex<()>,
    listener: Option<Arc<dyn Listener>>,
}

struct Policy {
    opened_at: Option<Instant>,
    opened_at_unix_ms: Option<u64>,
    half_open_successes: u32,
}

/// Outcome of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Counts as a success.
    Success,
    /// Counts as a failure.
    Failure,
    /// Not counted (e.g. a cancelled call); frees a probe slot.
    Ignore,
}

/// Point-in-time view of a breaker, for `/cb-stats`.
#[derive(Debug, Clone, serde::Serialize)]
#[non_exhaustive]
pub struct Snapshot {
    /// Endpoint name.
    #[serde(serialize_with = "serialize_str")]
    pub endpoint: Arc<str>,
    /// Current state.
    pub state: State,
    /// Failed calls since creation.
    pub failures: u64,
    /// Successful calls since creation.
    pub successes: u64,
    /// Calls refused while open since creation.
    pub rejected: u64,
    /// Counts in the rolling window.
    pub window: WindowCounts,
    /// When the breaker last opened, if it is not closed.
    #[serde(skip)]
    pub opened_at: Option<Instant>,
    /// Same as `opened_at`, as wall-clock milliseconds since the Unix epoch.
    pub opened_at_unix_ms: Option<u64>,
    /// While open: time until probes are admitted.
    pub retry_after_ms: Option<u64>,
}

impl Breaker {
    /// A breaker for `endpoint` (a name used in errors, events and snapshots).
    pub fn new(endpoint: impl Into<Arc<str>>, config: BreakerConfig) -> Result<Self, ConfigError> {
        Self::build(endpoint.into(), config, None)
    }

    /// A breaker that reports its transitions to `listener`.
    pub fn with_listener(
        endpoint: impl Into<Arc<str>>,
        config: BreakerConfig,
        listener: Arc<dyn Listener>,
    ) -> Result<Self, ConfigError> {
        Self::build(endpoint.into(), config, Some(listener))
    }

    fn build(
        endpoint: Arc<str>,
        config: BreakerConfig,
        listener: Option<Arc<dyn Listener>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::from_valid(endpoint, config, listener))
    }

    /// Builds from a config that passed [`BreakerConfig::validate`].
    pub(crate) fn from_valid(
        endpoint: Arc<str>,
        config: BreakerConfig,
        listener: Option<Arc<dyn Listener>>,
    ) -> Self {
        let bucket = u64::try_from(config.bucket().as_nanos()).unwrap_or(u64::MAX);
        Self {
            inner: Arc::new(Inner {
                endpoint,
                origin: Instant::now(),
                state: AtomicU8::new(State::Closed.to_u8()),
                open_until: AtomicU64::new(0),
                probes: AtomicU32::new(0),
                generation: AtomicU64::new(0),
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                window: Window::new(config.window_buckets.get(), bucket),
                policy: Mutex::new(Policy {
                    opened_at: None,
                    opened_at_unix_ms: None,
                    half_open_successes: 0,
                }),
                notify: Mutex::new(()),
                listener,
                config,
            }),
        }
    }

    /// Asks to make one call. `Err(Error::Open)` means: do not call.
    #[inline]
    pub fn acquire(&self) -> Result<Permit, Error> {
        let inner = &*self.inner;
        match State::from_u8(inner.state.load(Ordering::Acquire)) {
            State::Closed => Ok(self.permit(false)),
            State::Open => {
                let now = self.now();
                let until = inner.open_until.load(Ordering::Acquire);
                if now < until {
                    return Err(self.reject(Duration::from_nanos(until - now)));
                }
                self.to_half_open(now);
                self.take_probe()
            }
            State::HalfOpen => self.take_probe(),
        }
    }

    /// True when [`acquire`](Self::acquire) would currently admit a call
    /// (closed, open past its reset timeout, or half-open with a free probe
    /// slot). For balancers: an endpoint that is not available leaves the
    /// rotation.
    pub fn is_available(&self) -> bool {
        let inner = &*self.inner;
        match State::from_u8(inner.state.load(Ordering::Acquire)) {
            State::Closed => true,
            State::Open => self.now() >= inner.open_until.load(Ordering::Acquire),
            State::HalfOpen => inner.probes.load(Ordering::Acquire) > 0,
        }
    }

    /// Current state (an open breaker whose reset timeout has passed still
    /// reads `Open` until a call arrives).
    pub fn state(&self) -> State {
        State::from_u8(self.inner.state.load(Ordering::Acquire))
    }

    /// The endpoint name.
    pub fn endpoint(&self) -> &Arc<str> {
        &self.inner.endpoint
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.inner.config
    }

    /// A consistent view for `/cb-stats`.
    pub fn snapshot(&self) -> Snapshot {
        let inner = &*self.inner;
        let now = self.now();
        let policy = lock(&inner.policy);
        let state = self.state();
        let retry_after_ms = (state == State::Open)
            .then(|| inner.open_until.load(Ordering::Acquire).saturating_sub(now) / 1_000_000);
        Snapshot {
            endpoint: Arc::clone(&inner.endpoint),
            state,
            failures: inner.failures.load(Ordering::Relaxed),
            successes: inner.successes.load(Ordering::Relaxed),
            rejected: inner.rejected.load(Ordering::Relaxed),
            window: inner.window.counts(now),
            opened_at: policy.opened_at,
            opened_at_unix_ms: policy.opened_at_unix_ms,
            retry_after_ms,
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.inner.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn permit(&self, probe: bool) -> Permit {
        Permit {
            breaker: Some(self.clone()),
            probe,
            generation: self.inner.generation.load(Ordering::Acquire),
        }
    }

    fn reject(&self, retry_after: Duration) -> Error {
        self.inner.rejected.fetch_add(1, Ordering::Relaxed);
        Error::Open {
            endpoint: Arc::clone(&self.inner.endpoint),
            retry_after,
        }
    }

    fn take_probe(&self) -> Result<Permit, Error> {
        let inner = &*self.inner;
        let taken = inner
            .probes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1));
        match taken {
            Ok(_) => Ok(self.permit(true)),
            // Probes are in flight: they resolve within the call timeout.
            Err(_) => Err(self.reject(
                inner
                    .config
                    .call_timeout
                    .unwrap_or(inner.config.reset_timeout),
            )),
        }
    }

    #[cold]
    fn to_half_open(&self, now: u64) {
        let inner = &*self.inner;
        let mut policy = lock(&inner.policy);
        if self.state() != State::Open || now < inner.open_until.load(Ordering::Acquire) {
            return; // another caller got here first
        }
        policy.half_open_successes = 0;
        inner
            .probes
            .store(inner.config.half_open_probes.get(), Ordering::Release);
        let counts = inner.window.counts(now);
        self.transition(policy, State::Open, State::HalfOpen, counts);
    }

    fn record(&self, probe: bool, generation: u64, outcome: Outcome) {
        let inner = &*self.inner;
        if outcome == Outcome::Ignore && !probe {
            return; // nothing to count, no lock
        }
        match outcome {
            Outcome::Success => inner.successes.fetch_add(1, Ordering::Relaxed),
            Outcome::Failure => inner.failures.fetch_add(1, Ordering::Relaxed),
            Outcome::Ignore => 0,
        };
        let now = self.now();
        // Fast path: a success while closed only bumps a window counter.
        if outcome == Outcome::Success
            && !probe
            && self.state() == State::Closed
            && inner.window.try_record_success(now)
        {
            return;
        }
        let mut policy = lock(&inner.policy);
        let current = inner.generation.load(Ordering::Acquire) == generation;
        match (self.state(), outcome) {
            (State::Closed, Outcome::Success | Outcome::Failure) => {
                let failed = outcome == Outcome::Failure;
                inner.window.record(now, failed);
                // Only a failure can trip the breaker: successes skip the sum.
                if failed {
                    let counts = inner.window.counts(now);
                    if self.should_trip(counts) {
                        self.open(policy, now, State::Closed, counts);
                    }
                }
            }
            (State::HalfOpen, _) if probe && current => match outcome {
                Outcome::Failure => {
                    let counts = inner.window.counts(now);
                    self.open(policy, now, State::HalfOpen, counts);
                }
                Outcome::Success => {
                    policy.half_open_successes += 1;
                    if policy.half_open_successes >= inner.config.successes_to_close.get() {
                        inner.window.clear();
                        policy.opened_at = None;
                        policy.opened_at_unix_ms = None;
                        let counts = inner.window.counts(now);
                        self.transition(policy, State::HalfOpen, State::Closed, counts);
                    } else {
                        inner.probes.fetch_add(1, Ordering::AcqRel);
                    }
                }
                Outcome::Ignore => {
                    inner.probes.fetch_add(1, Ordering::AcqRel);
                }
            },
            // Outcomes of calls admitted in an earlier period, or while open.
            _ => {}
        }
    }

    fn should_trip(&self, counts: WindowCounts) -> bool {
        let cfg = &self.inner.config;
        let total = u64::from(counts.total());
        total >= u64::from(cfg.volume_threshold.get())
            && u64::from(counts.failures) * 100 > u64::from(cfg.error_threshold_percent) * total
    }

    fn open(
        &self,
        mut policy: MutexGuard<'_, Policy>,
        now: u64,
        from: State,
        counts: WindowCounts,
    ) {
        let inner = &*self.inner;
        let reset = u64::try_from(inner.config.reset_timeout.as_nanos()).unwrap_or(u64::MAX);
        inner
            .open_until
            .store(now.saturating_add(reset), Ordering::Release);
        inner.probes.store(0, Ordering::Release);
        policy.opened_at = Some(Instant::now());
        policy.opened_at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok());
        self.transition(policy, from, State::Open, counts);
    }

    /// Publishes `to`, then tells the listener after releasing the policy
    /// lock (holding the notify lock so listener calls keep their order).
    fn transition(
        &self,
        policy: MutexGuard<'_, Policy>,
        from: State,
        to: State,
        window: WindowCounts,
    ) {
        let inner = &*self.inner;
        inner.generation.fetch_add(1, Ordering::AcqRel);
        inner.state.store(to.to_u8(), Ordering::Release);
        let notify = lock(&inner.notify);
        drop(policy);
        match to {
            State::Open => {
                tracing::warn!(endpoint = %inner.endpoint, %from, failures = window.failures, total = window.total(), "circuit opened")
            }
            _ => tracing::info!(endpoint = %inner.endpoint, %from, %to, "circuit state changed"),
        }
        if let Some(listener) = &inner.listener {
            listener.on_transition(&Transition {
                endpoint: Arc::clone(&inner.endpoint),
                from,
                to,
                window,
            });
        }
        drop(notify);
    }
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("endpoint", &self.inner.endpoint)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Leave to make one call; record its outcome with [`record`](Self::record)
/// (or [`success`](Self::success) / [`failure`](Self::failure)). Dropping it
/// unrecorded counts as [`Outcome::Ignore`] (a cancelled call), so a lost
/// probe never wedges a half-open breaker.
#[must_use = "record the outcome of the call"]
pub struct Permit {
    breaker: Option<Breaker>,
    probe: bool,
    generation: u64,
}

impl Permit {
    /// Records the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        if let Some(b) = self.breaker.take() {
            b.record(self.probe, self.generation, outcome);
        }
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success);
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure);
    }

    pub(crate) fn endpoint(&self) -> Arc<str> {
        self.breaker
            .as_ref()
            .map_or_else(|| Arc::from("unknown"), |b| Arc::clone(b.endpoint()))
    }

    /// True when this call is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(b) = self.breaker.take() {
            b.record(self.probe, self.generation, Outcome::Ignore);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

fn serialize_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

// The policy stays consistent if a listener or tracing panics mid-update.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
