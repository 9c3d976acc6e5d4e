//! Emitter counters: lock-free, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) emitted: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_closed: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EmitterStats {
        EmitterStats {
            emitted: self.emitted.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_closed: self.dropped_closed.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Counters of an [`Emitter`](super::Emitter), all monotonic.
///
/// Every event passed to `emit` ends in exactly one bucket once the queue has
/// drained: `emitted = sent + failed + (still queued)`, and the drops never
/// entered the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmitterStats {
    /// Accepted into the queue.
    pub emitted: u64,
    /// Dropped by `emit` because the queue was full.
    pub dropped_full: u64,
    /// Dropped by `emit` because the background task had stopped.
    pub dropped_closed: u64,
    /// Acknowledged by the sink (for Kafka: by the broker, per `acks`).
    pub sent: u64,
    /// Dequeued but not delivered: broker down or refusing after retries.
    pub failed: u64,
}

impl EmitterStats {
    /// All events lost so far, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_closed + self.failed
    }
}
