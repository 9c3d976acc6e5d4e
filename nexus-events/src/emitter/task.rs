//! The background loop between the queue and the sink.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::stats::Counters;
use super::{EmitterConfig, EventSink};
use crate::Event;

pub(super) async fn run<S: EventSink>(
    mut sink: S,
    config: EmitterConfig,
    mut rx: mpsc::Receiver<Event>,
    mut stop: oneshot::Receiver<()>,
    counters: Arc<Counters>,
) {
    let mut batch: Vec<Event> = Vec::with_capacity(config.max_batch.min(8_192));
    let mut warn = DropWarning::new(config.warn_interval);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            n = rx.recv_many(&mut batch, config.max_batch) => {
                if n == 0 {
                    break; // every Emitter dropped
                }
            }
        }
        fill_for_linger(&mut rx, &mut batch, &config).await;
        deliver(&mut sink, &mut batch, &counters).await;
        warn.maybe_warn(&counters);
    }
    // Shutdown: deliver what is already queued, then close the sink.
    rx.close();
    while rx.recv_many(&mut batch, config.max_batch).await > 0 {
        deliver(&mut sink, &mut batch, &counters).await;
    }
    sink.close().await;
    warn.maybe_warn(&counters);
}

/// Waits up to `linger` (from now) for the batch to fill.
async fn fill_for_linger(
    rx: &mut mpsc::Receiver<Event>,
    batch: &mut Vec<Event>,
    c: &EmitterConfig,
) {
    if c.linger.is_zero() {
        return;
    }
    let deadline = Instant::now() + c.linger;
    while batch.len() < c.max_batch {
        let room = c.max_batch - batch.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn deliver<S: EventSink>(sink: &mut S, batch: &mut Vec<Event>, counters: &Counters) {
    let report = sink.deliver(batch).await;
    let unaccounted = batch.len().saturating_sub(report.sent + report.failed);
    Counters::add(&counters.sent, report.sent);
    Counters::add(&counters.failed, report.failed + unaccounted);
    batch.clear();
}

/// Logs at most one warning per interval, with the losses since the last one.
struct DropWarning {
    interval: std::time::Duration,
    last: Option<Instant>,
    reported: u64,
}

impl DropWarning {
    fn new(interval: std::time::Duration) -> Self {
        Self {
            interval,
            last: None,
            reported: 0,
        }
    }

    fn maybe_warn(&mut self, c: &Counters) {
        let lost = c.dropped_full.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
        if lost == self.reported {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return;
        }
        tracing::warn!(
            lost_since_last_warning = lost - self.reported,
            lost_total = lost,
            "events dropped (queue full or broker unavailable)"
        );
        self.last = Some(now);
        self.reported = lost;
    }
}
