//! One multiplexed upstream connection: a supervisor that connects lazily,
//! reconnects with exponential backoff, and, while connected, runs a writer
//! (coalesces queued batches into few writes) and a reader (scans replies and
//! hands each batch its contiguous slice, FIFO) concurrently in one task.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use super::{Batch, Reply, connect};
use crate::client::{Gets, gets};
use crate::config::ProxyConfig;
use crate::error::UpstreamError;
use crate::metrics::Metrics;
use crate::resp::{Limits, Scanner};

/// Bytes buffered before the writer flushes even if more batches are queued.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// A connection that lived at least this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// A batch written to Redis and waiting for its replies.
struct InFlight {
    count: usize,
    /// Which replies answer client `GET`s.
    gets: Gets,
    reply: oneshot::Sender<Reply>,
    sent_at: Instant,
}

/// Reader progress inside the front in-flight batch, kept outside the reader
/// future so the replies already received survive a connection failure.
struct ReadState {
    /// The batch being answered, taken off the shared queue when its first
    /// reply bytes arrive: the reader frames its replies without locking
    /// the queue per reply.
    front: Option<InFlight>,
    buf: BytesMut,
    /// Bytes of `buf` holding complete replies of the front batch.
    offset: usize,
    /// Replies of the front batch complete so far.
    done: usize,
    /// `GET` hits and misses among them, added to the metrics when the
    /// batch is answered (or fails).
    hits: u64,
    misses: u64,
    scanner: Scanner,
}

impl ReadState {
    /// Adds the front batch's `GET` hits and misses to the metrics.
    fn publish_gets(&mut self, metrics: &Metrics) {
        if self.hits > 0 {
            metrics
                .get_hits
                .fetch_add(std::mem::take(&mut self.hits), Relaxed);
        }
        if self.misses > 0 {
            metrics
                .get_misses
                .fetch_add(std::mem::take(&mut self.misses), Relaxed);
        }
    }
}

pub(super) async fn supervise(
    mut rx: mpsc::Receiver<Batch>,
    config: Arc<ProxyConfig>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = config.backoff_initial;
    while let Some(first) = rx.recv().await {
        let started = Instant::now();
        let failure = match connect(&config.upstream, config.connect_timeout).await {
            Ok(stream) => {
                metrics.upstream_connects.fetch_add(1, Relaxed);
                let Some(err) = run(stream, first, &mut rx, &config, &metrics).await else {
                    return; // every sender is gone
                };
                tracing::warn!(upstream = %config.upstream.host_port, error = %err, "upstream connection lost");
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = config.backoff_initial;
                    continue;
                }
                err
            }
            Err(err) => {
                metrics.upstream_connect_failures.fetch_add(1, Relaxed);
                tracing::warn!(upstream = %config.upstream.host_port, error = %err, "upstream connect failed");
                fail(first, err.clone(), &metrics);
                err
            }
        };
        // Back off before the next attempt; meanwhile fail arrivals at once rather
        // than letting clients wait on a Redis that is known to be down.
        let until = Instant::now() + backoff;
        backoff = (backoff * 2).min(config.backoff_max);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                b = rx.recv() => match b {
                    Some(b) => fail(b, failure.clone(), &metrics),
                    None => return,
                },
            }
        }
    }
}

fn fail(batch: Batch, err: UpstreamError, metrics: &Metrics) {
    metrics
        .upstream_failed_commands
        .fetch_add(batch.count as u64, Relaxed);
    let _ = batch.reply.send(Reply {
        bytes: Bytes::new(),
        failure: Some((batch.count, err)),
    });
}

/// Drives one live connection. Returns the error that ended it, or `None` when
/// the queue closed (all clients and the pool handle are gone).
async fn run(
    stream: TcpStream,
    first: Batch,
    rx: &mut mpsc::Receiver<Batch>,
    config: &ProxyConfig,
    metrics: &Metrics,
) -> Option<UpstreamError> {
    let (rd, wr) = stream.into_split();
    let inflight = Mutex::new(VecDeque::<InFlight>::new());
    // Bounds the batches written but not yet answered.
    let window = Semaphore::new(config.upstream_queue.get());
    let mut state = ReadState {
        front: None,
        buf: BytesMut::with_capacity(64 * 1024),
        offset: 0,
        done: 0,
        hits: 0,
        misses: 0,
        scanner: Scanner::new(reply_limits()).inline(false),
    };
    // The batch the writer has taken from the queue but not yet written:
    // owned here so a connection that fails meanwhile fails it too (counted).
    let mut held = Some(first);
    let result = tokio::select! {
        r = write_loop(wr, &mut held, rx, &inflight, &window, metrics) => r,
        r = read_loop(rd, &mut state, &inflight, &window, metrics, config.upstream_timeout) => Some(r),
    };
    let err = result.clone().unwrap_or(UpstreamError::ConnectionLost);
    // Fail whatever was written but not answered: the front batch keeps the
    // replies that did arrive.
    let mut pending = std::mem::take(&mut *inflight.lock().unwrap_or_else(PoisonError::into_inner));
    state.publish_gets(metrics);
    // Without a batch in hand the reader has consumed nothing (offset and
    // done are 0), and the oldest queued batch is the front.
    if let Some(front) = state.front.take().or_else(|| pending.pop_front()) {
        let bytes = state.buf.split_to(state.offset).freeze();
        let missing = front.count - state.done;
        metrics
            .upstream_failed_commands
            .fetch_add(missing as u64, Relaxed);
        let _ = front.reply.send(Reply {
            bytes,
            failure: Some((missing, err.clone())),
        });
    }
    for p in pending {
        metrics
            .upstream_failed_commands
            .fetch_add(p.count as u64, Relaxed);
        let _ = p.reply.send(Reply {
            bytes: Bytes::new(),
            failure: Some((p.count, err.clone())),
        });
    }
    // Taken from the queue after every batch in flight: failed after them.
    if let Some(batch) = held {
        fail(batch, err, metrics);
    }
    result
}

fn reply_limits() -> Limits {
    // Replies come from the Redis we were configured to trust: allow what Redis can
    // send (512 MiB strings, large aggregates), but keep depth bounded.
    Limits {
        max_bulk_len: 1 << 30,
        max_elements: usize::MAX >> 8,
        ..Limits::default()
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    held: &mut Option<Batch>,
    rx: &mut mpsc::Receiver<Batch>,
    inflight: &Mutex<VecDeque<InFlight>>,
    window: &Semaphore,
    metrics: &Metrics,
) -> Option<UpstreamError> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    loop {
        if held.is_none() {
            let b = held.insert(rx.recv().await?);
            // A pipelined batch lets the other clients that are ready in
            // this turn of the scheduler queue their batches first, so
            // they share the write (fewer writes under pipelined load). A
            // single command is written at once: its client waits for it
            // alone, and measured at 50 non-pipelined clients the extra
            // turn cost more latency than the coalescing saved.
            if b.count > 1 {
                tokio::task::yield_now().await;
            }
        }
        let Ok(permit) = window.acquire().await else {
            return Some(UpstreamError::ConnectionLost);
        };
        let Some(batch) = held.take() else {
            continue;
        };
        permit.forget();
        // One clock read per write: the batches coalesced into it leave together.
        let now = Instant::now();
        enqueue(batch, now, &mut out, inflight, metrics);
        // Coalesce whatever else is already queued into the same write.
        while out.len() < WRITE_HIGH_WATER {
            let Ok(permit) = window.try_acquire() else {
                break;
            };
            match rx.try_recv() {
                Ok(b) => {
                    permit.forget();
                    enqueue(b, now, &mut out, inflight, metrics);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = wr.write_all(&out).await {
            tracing::debug!(error = %e, "upstream write failed");
            return Some(UpstreamError::ConnectionLost);
        }
        out.clear();
    }
}

fn enqueue(
    batch: Batch,
    sent_at: Instant,
    out: &mut BytesMut,
    inflight: &Mutex<VecDeque<InFlight>>,
    metrics: &Metrics,
) {
    metrics.upstream_batches.fetch_add(1, Relaxed);
    metrics.forwarded.fetch_add(batch.count as u64, Relaxed);
    // Registered before the bytes can reach Redis, so a reply always finds its batch.
    inflight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push_back(InFlight {
            count: batch.count,
            gets: batch.gets,
            reply: batch.reply,
            sent_at,
        });
    out.extend_from_slice(&batch.bytes);
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    st: &mut ReadState,
    inflight: &Mutex<VecDeque<InFlight>>,
    window: &Semaphore,
    metrics: &Metrics,
    reply_timeout: Duration,
) -> UpstreamError {
    loop {
        // Batches answered in this pass share one clock read.
        let mut now = None;
        // Scan every complete reply in the buffer.
        while st.offset < st.buf.len() {
            let front = match &st.front {
                Some(f) => f,
                None => {
                    let next = inflight
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    match next {
                        Some(f) => st.front.insert(f),
                        None => return UpstreamError::Protocol("reply without a request".into()),
                    }
                }
            };
            let (count, get) = (front.count, front.gets.has(st.done));
            match st.scanner.scan(&st.buf[st.offset..]) {
                Ok(Some(n)) => {
                    if st.buf[st.offset] == b'-' {
                        metrics.upstream_error_replies.fetch_add(1, Relaxed);
                    }
                    if get {
                        // At the reply's boundary: two bytes, no rescan.
                        match gets::classify(&st.buf[st.offset..st.offset + n]) {
                            Some(true) => st.hits += 1,
                            Some(false) => st.misses += 1,
                            None => {}
                        }
                    }
                    st.offset += n;
                    st.done += 1;
                    if st.done == count {
                        let bytes = st.buf.split_to(st.offset).freeze();
                        st.offset = 0;
                        st.done = 0;
                        st.publish_gets(metrics);
                        window.add_permits(1);
                        if let Some(f) = st.front.take() {
                            let now = *now.get_or_insert_with(Instant::now);
                            metrics
                                .upstream_latency
                                .record(now.saturating_duration_since(f.sent_at));
                            let _ = f.reply.send(Reply {
                                bytes,
                                failure: None,
                            });
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return UpstreamError::Protocol(e.to_string()),
            }
        }
        if st.buf.capacity() - st.buf.len() < 4096 {
            st.buf.reserve(64 * 1024);
        }
        // The oldest unanswered batch bounds the wait: a Redis that stops
        // answering (or a black-holed network) cannot hang clients.
        let oldest = match &st.front {
            Some(f) => Some(f.sent_at),
            None => inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .front()
                .map(|f| f.sent_at),
        };
        // With nothing outstanding, wake up after a while anyway to pick up the
        // deadline of batches written meanwhile.
        let deadline = oldest.map(|sent_at| sent_at + reply_timeout);
        let wake = deadline.unwrap_or_else(|| Instant::now() + reply_timeout);
        let result = match tokio::time::timeout_at(wake, rd.read_buf(&mut st.buf)).await {
            Ok(r) => r,
            Err(_) if deadline.is_some() => return UpstreamError::Timeout,
            Err(_) => continue,
        };
        match result {
            Ok(0) => return UpstreamError::ConnectionLost,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "upstream read failed");
                return UpstreamError::ConnectionLost;
            }
        }
    }
}
