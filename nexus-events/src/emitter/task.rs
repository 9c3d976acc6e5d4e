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

/// Lets the batch fill for `linger`, then takes what is queued (up to
/// `max_batch`) without waiting further.
///
/// The task sleeps instead of awaiting the channel during the linger, so
/// emitters do not wake it for every event: only the first event after an
/// idle period costs `emit` a wake-up, which keeps `emit`'s tail latency flat.
async fn fill_for_linger(
    rx: &mut mpsc::Receiver<Event>,
    batch: &mut Vec<Event>,
    c: &EmitterConfig,
) {
    if !c.linger.is_zero() && batch.len() < c.max_batch {
        tokio::time::sleep(c.linger).await;
    }
    while batch.len() < c.max_batch {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => return,
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
