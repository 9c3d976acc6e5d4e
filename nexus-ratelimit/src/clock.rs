//! Time source for the limiter.
//!
//! The limiter never reads the system clock directly: it asks a [`Clock`] for
//! the number of nanoseconds elapsed since that clock's origin. Tests use the
//! default [`TokioClock`] under `tokio::time::pause()`; hot production paths
//! can pick [`QuantaClock`] (time-stamp counter, several times cheaper than
//! `Instant::now()` on this machine), non-tokio users [`StdClock`].

use std::fmt;

/// A monotonic source of time, in nanoseconds since an arbitrary origin.
///
/// Implementations must never go backwards; the limiter treats a smaller
/// reading as "no time passed" rather than panicking.
pub trait Clock: Clone + Send + Sync + 'static {
    /// Nanoseconds elapsed since this clock's origin.
    fn now_nanos(&self) -> u64;
}

/// Clock backed by [`tokio::time::Instant`], so a paused tokio clock
/// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) drives it.
#[derive(Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock").finish_non_exhaustive()
    }
}

impl Clock for TokioClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        saturating_nanos(self.origin.elapsed())
    }
}

/// Clock backed by [`std::time::Instant`]: no tokio runtime needed, not
/// affected by a paused tokio clock.
#[derive(Clone, Copy)]
pub struct StdClock {
    origin: std::time::Instant,
}

impl StdClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for StdClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for StdClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StdClock").finish_non_exhaustive()
    }
}

impl Clock for StdClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        saturating_nanos(self.origin.elapsed())
    }
}

/// Clock reading the CPU's time-stamp counter through `quanta` (the clock
/// `governor` uses): the cheapest monotonic clock here, for hot paths in
/// production. Not driven by a paused tokio clock.
#[derive(Clone)]
pub struct QuantaClock {
    clock: quanta::Clock,
    origin: u64,
}

impl QuantaClock {
    /// A clock whose origin is now (calibrates the counter on first use in
    /// the process, which takes a few milliseconds).
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for QuantaClock {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for QuantaClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuantaClock").finish_non_exhaustive()
    }
}

impl Clock for QuantaClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
    }
}

/// A clock moved by hand, for deterministic tests and property tests.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ManualClock {
    /// A clock reading zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        self.nanos
            .fetch_add(saturating_nanos(by), std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the clock to `nanos` since its origin (may go backwards: the
    /// limiter must cope).
    pub fn set_nanos(&self, nanos: u64) {
        self.nanos
            .store(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `Duration` as whole nanoseconds, saturating at `u64::MAX` (584 years).
pub(crate) fn saturating_nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
