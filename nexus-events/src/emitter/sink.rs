//! Where the background task delivers events.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::Event;

/// Outcome of one [`EventSink::deliver`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// Events the destination acknowledged.
    pub sent: usize,
    /// Events given up on (counted as `failed`).
    pub failed: usize,
}

/// A destination for batches of events, driven by the emitter's task.
///
/// Implementations own their retries and must return in bounded time; they
/// are never called concurrently.
pub trait EventSink: Send + 'static {
    /// Delivers `batch` (drained by the caller afterwards).
    fn deliver(&mut self, batch: &[Event]) -> impl Future<Output = DeliveryReport> + Send;

    /// Called once when the emitter shuts down.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Keeps the most recent `capacity` events in memory; clones share the buffer.
#[derive(Debug, Clone)]
pub struct MemorySink {
    inner: Arc<MemoryInner>,
}

#[derive(Debug)]
struct MemoryInner {
    capacity: usize,
    events: Mutex<VecDeque<Event>>,
    notify: Notify,
}

impl MemorySink {
    /// A sink retaining at most `capacity` events (oldest evicted first).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                capacity: capacity.max(1),
                events: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
            }),
        }
    }

    /// A copy of the retained events, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().iter().cloned().collect()
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` events are retained or `timeout` passes;
    /// returns the retained count.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.inner.notify.notified();
                if self.len() >= n {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Event>> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventSink for MemorySink {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        {
            let mut events = self.lock();
            for e in batch {
                if events.len() == self.inner.capacity {
                    events.pop_front();
                }
                events.push_back(e.clone());
            }
        }
        self.inner.notify.notify_waiters();
        DeliveryReport {
            sent: batch.len(),
            failed: 0,
        }
    }
}

/// Writes each event as one JSON `tracing` line at info level (target
/// `nexus_events`); for running without Kafka.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

impl EventSink for LogSink {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        let mut buf = Vec::with_capacity(256);
        for e in batch {
            buf.clear();
            e.encode_into(&mut buf);
            tracing::info!(
                target: "nexus_events",
                topic = e.topic(),
                event = %String::from_utf8_lossy(&buf),
                "event"
            );
        }
        DeliveryReport {
            sent: batch.len(),
            failed: 0,
        }
    }
}
