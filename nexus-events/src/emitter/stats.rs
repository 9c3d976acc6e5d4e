//! Emitter counters: lock-free, read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) capacity: u64,
    pub(crate) emitted: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dropped_closed: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Counters {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity as u64,
            emitted: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_closed: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> EmitterStats {
        // Delivered counters first: a concurrent delivery can then only make
        // `queued` read high, never wrap below zero.
        let sent = self.sent.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let emitted = self.emitted.load(Ordering::Relaxed);
        EmitterStats {
            emitted,
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_closed: self.dropped_closed.load(Ordering::Relaxed),
            sent,
            failed,
            queued: emitted.saturating_sub(sent + failed),
            queue_capacity: self.capacity,
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
    /// Accepted but not yet delivered or given up on: waiting in the queue
    /// or in the batch being sent (`emitted - sent - failed`).
    pub queued: u64,
    /// The queue's bound ([`EmitterConfig::capacity`](super::EmitterConfig::capacity)).
    pub queue_capacity: u64,
}

impl EmitterStats {
    /// All events lost so far, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_full + self.dropped_closed + self.failed
    }
}
