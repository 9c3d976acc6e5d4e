//! The request-path handle: [`Emitter::emit`] never blocks and never fails.
//!
//! ```text
//! emit() --try_send--> bounded queue (capacity) --> background task
//!                        full? drop + count          batches (max_batch, linger)
//!                                                    --> EventSink::deliver
//! ```

mod sink;
mod stats;
mod task;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use sink::{DeliveryReport, EventSink, LogSink, MemorySink};
use stats::Counters;
pub use stats::EmitterStats;

use crate::{Event, TraceContext};

/// Tuning of the queue between [`Emitter::emit`] and the background task.
#[derive(Debug, Clone)]
pub struct EmitterConfig {
    /// Events queued before `emit` starts dropping (the queue's bound).
    pub capacity: usize,
    /// Most events handed to the sink in one call.
    pub max_batch: usize,
    /// How long the task waits for more events after the first one of a
    /// batch, to fill bigger batches. Zero sends whatever is queued at once.
    pub linger: Duration,
    /// Minimum interval between two "events dropped" warnings.
    pub warn_interval: Duration,
}

impl Default for EmitterConfig {
    fn default() -> Self {
        Self {
            capacity: 65_536,
            max_batch: 8_192,
            linger: Duration::from_millis(5),
            warn_interval: Duration::from_secs(10),
        }
    }
}

/// Invalid [`EmitterConfig`].
#[derive(Debug, thiserror::Error)]
pub enum EmitterConfigError {
    /// A field that must be positive was zero.
    #[error("emitter config: `{0}` must be greater than zero")]
    Zero(&'static str),
}

impl EmitterConfig {
    fn validate(&self) -> Result<(), EmitterConfigError> {
        if self.capacity == 0 {
            return Err(EmitterConfigError::Zero("capacity"));
        }
        if self.max_batch == 0 {
            return Err(EmitterConfigError::Zero("max_batch"));
        }
        Ok(())
    }
}

/// Cheap, cloneable handle used on the request path.
///
/// `emit` is a `try_send` into a bounded queue plus one relaxed atomic add: it
/// never awaits, never allocates beyond the event the caller built, and never
/// reports failure to the caller. Drops are visible in [`Emitter::stats`].
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Event>,
    counters: Arc<Counters>,
}

/// Owns the background task of an [`Emitter`]; use it to shut down cleanly.
///
/// Dropping it leaves the task running until every `Emitter` clone is dropped.
#[derive(Debug)]
pub struct EmitterTask {
    join: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
    counters: Arc<Counters>,
}

impl Emitter {
    /// Starts the background task feeding `sink`. Must be called inside a
    /// tokio runtime.
    pub fn spawn<S: EventSink>(
        sink: S,
        config: EmitterConfig,
    ) -> Result<(Self, EmitterTask), EmitterConfigError> {
        config.validate()?;
        let (tx, rx) = mpsc::channel(config.capacity);
        let counters = Arc::new(Counters::new(config.capacity));
        let (stop_tx, stop_rx) = oneshot::channel();
        let join = tokio::spawn(task::run(sink, config, rx, stop_rx, counters.clone()));
        let task = EmitterTask {
            join,
            shutdown: Some(stop_tx),
            counters: counters.clone(),
        };
        Ok((Self { tx, counters }, task))
    }

    /// An emitter with a [`MemorySink`] of `capacity` events, for tests and for
    /// running without Kafka.
    pub fn in_memory(
        capacity: usize,
    ) -> Result<(Self, EmitterTask, MemorySink), EmitterConfigError> {
        let sink = MemorySink::new(capacity);
        let (emitter, task) = Self::spawn(sink.clone(), EmitterConfig::default())?;
        Ok((emitter, task, sink))
    }

    /// Queues `event` for delivery; drops and counts it if the queue is full
    /// or the task has stopped.
    ///
    /// When `event.trace` is unset it captures the trace context of the
    /// current `tracing` span here, on the caller's task (the background
    /// sender runs where the request's span is not current). Outside any span
    /// this costs one thread-local read.
    #[inline]
    pub fn emit(&self, mut event: Event) {
        if event.trace.is_none() {
            event.trace = TraceContext::current();
        }
        match self.tx.try_send(event) {
            Ok(()) => Counters::inc(&self.counters.emitted),
            Err(mpsc::error::TrySendError::Full(_)) => Counters::inc(&self.counters.dropped_full),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Counters::inc(&self.counters.dropped_closed)
            }
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EmitterStats {
        self.counters.snapshot()
    }

    /// A handle reading the counters that, unlike an `Emitter` clone, does
    /// not keep the queue open (for admin endpoints and metrics).
    pub fn stats_handle(&self) -> EmitterStatsHandle {
        EmitterStatsHandle(self.counters.clone())
    }
}

/// Reads an [`Emitter`]'s counters without keeping its queue open.
#[derive(Debug, Clone)]
pub struct EmitterStatsHandle(Arc<Counters>);

impl EmitterStatsHandle {
    /// A snapshot of the counters.
    pub fn get(&self) -> EmitterStats {
        self.0.snapshot()
    }
}

impl EmitterTask {
    /// A snapshot of the counters.
    pub fn stats(&self) -> EmitterStats {
        self.counters.snapshot()
    }

    /// Stops accepting new events, delivers what is already queued (bounded by
    /// `grace`), and waits for the task. Returns the final counters.
    pub async fn shutdown(mut self, grace: Duration) -> EmitterStats {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(grace, &mut self.join).await.is_err() {
            self.join.abort();
            tracing::warn!(
                ?grace,
                "event emitter did not drain within its grace period"
            );
        }
        self.counters.snapshot()
    }
}
