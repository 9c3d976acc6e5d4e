//! Bodies in flight through the proxy, each with an idle limit and each told
//! whose fault a failure is.
//!
//! - [`ClientBody`]: the client's request body on its way upstream. It records
//!   in a shared [`ClientState`] when the client side failed (malformed framing,
//!   client gone, no data for the idle period), so the attempt loop answers
//!   400 / 499 / 408 and does not count the upstream as failed.
//! - [`UpstreamStream`]: a streamed upstream response body (optionally after a
//!   prefix already read). It ends with an error when no frame arrives for the
//!   idle period and reports any failure to the upstream's breaker.
//!
//! The idle period of both is `proxy.body_idle_timeout` (default 60 s, nginx's
//! `proxy_read_timeout` / `client_body_timeout`), not the shorter
//! `proxy.timeout` the upstream has for its response headers: server-sent
//! events and long-poll responses pause between frames.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use super::seams::{AttemptGuard, AttemptOutcome, Breakers};
use crate::body::BoxError;

/// Fires when one wait for the next frame lasts `idle`. Only time spent
/// waiting counts: while the reader does not poll (its own peer is slow to
/// take the data) the clock is stopped. Costs nothing while frames are ready;
/// the timer is allocated on the first pending poll and re-armed only when it
/// fires early (a later wait moved the deadline).
struct IdleTimer {
    idle: Duration,
    /// Start of the current wait (`None` right after a frame).
    wait_start: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        Self {
            idle,
            wait_start: None,
            sleep: None,
        }
    }

    /// A frame arrived: the current wait is over.
    fn touch(&mut self) {
        self.wait_start = None;
    }

    /// After the inner body returned `Pending`: whether this wait has lasted
    /// the idle period (otherwise the timer is registered with `cx`). The
    /// second value is true when this poll started a new wait.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> (bool, bool) {
        let started = self.wait_start.is_none();
        let start = *self.wait_start.get_or_insert_with(Instant::now);
        (self.poll_deadline(start + self.idle, cx), started)
    }

    fn poll_deadline(&mut self, deadline: Instant, cx: &mut Context<'_>) -> bool {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            if Instant::now() >= deadline {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// How far the client's request body got (see [`ClientState::fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// A frame is with the upstream connection (or nothing was polled yet).
    Sending = 0,
    /// Polled and waiting for the client to send more.
    WaitingClient = 1,
    /// The whole body was read.
    Ended = 2,
    /// The client's framing was invalid (bad chunk size, ...).
    Malformed = 3,
    /// The client went away mid-body.
    Aborted = 4,
    /// The client sent nothing for the idle period.
    TimedOut = 5,
}

/// A failure of the client's request body: not the upstream's fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientFault {
    /// Invalid body framing: 400.
    Malformed,
    /// The client closed the connection mid-body: nothing to answer.
    Aborted,
    /// The client stopped sending: 408.
    TimedOut,
}

/// Progress of one request body, shared between [`ClientBody`] (on the
/// upstream connection's task) and the attempt loop.
#[derive(Debug)]
pub(super) struct ClientState {
    phase: AtomicU8,
    /// Nanoseconds after `origin` of the last progress: a frame read, the
    /// end, or the start of the current wait for the client.
    progress: AtomicU64,
    origin: Instant,
}

impl ClientState {
    fn new() -> Self {
        Self {
            phase: AtomicU8::new(Phase::Sending as u8),
            progress: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn set(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }

    fn progressed(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.progress.store(nanos, Ordering::Release);
    }

    /// When the body last made progress (a frame read, its end, or the start
    /// of the current wait for the client).
    pub(super) fn last_progress(&self) -> Instant {
        self.origin + Duration::from_nanos(self.progress.load(Ordering::Acquire))
    }

    /// The client side failed, if it did.
    pub(super) fn fault(&self) -> Option<ClientFault> {
        match self.phase() {
            x if x == Phase::Malformed as u8 => Some(ClientFault::Malformed),
            x if x == Phase::Aborted as u8 => Some(ClientFault::Aborted),
            x if x == Phase::TimedOut as u8 => Some(ClientFault::TimedOut),
            _ => None,
        }
    }

    /// Still waiting for the client to send more of its body.
    pub(super) fn waiting_for_client(&self) -> bool {
        self.phase() == Phase::WaitingClient as u8
    }
}

/// Whether a client body error is bad framing (400) rather than a client
/// that went away: hyper reports invalid chunked framing as an `io::Error`
/// of kind `InvalidInput` / `InvalidData`; a connection closed mid-body as
/// `UnexpectedEof` ("incomplete message") or a reset.
fn classify(e: &hyper::Error) -> Phase {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                    Phase::Malformed
                }
                _ => Phase::Aborted,
            };
        }
        source = s.source();
    }
    if e.is_parse() {
        Phase::Malformed
    } else {
        Phase::Aborted
    }
}

/// The client's request body, forwarded upstream; see the module docs.
pub struct ClientBody {
    inner: Incoming,
    state: Arc<ClientState>,
    idle: IdleTimer,
}

impl std::fmt::Debug for ClientBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ClientBody {
    /// Wraps a client body; the state tells the attempt loop how it went.
    pub(super) fn new(inner: Incoming, idle: Duration) -> (Self, Arc<ClientState>) {
        let state = Arc::new(ClientState::new());
        let body = Self {
            inner,
            state: Arc::clone(&state),
            idle: IdleTimer::new(idle),
        };
        (body, state)
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.touch();
                this.state.progressed(); // handed on: the upstream's turn
                this.state.set(Phase::Sending);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.state.set(classify(&e));
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.state.progressed();
                this.state.set(Phase::Ended);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let (expired, started) = this.idle.poll_expired(cx);
                if expired {
                    this.state.set(Phase::TimedOut);
                    return Poll::Ready(Some(Err("client request body timed out".into())));
                }
                if started {
                    this.state.progressed();
                }
                this.state.set(Phase::WaitingClient);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end && self.state.fault().is_none() {
            self.state.progressed();
            self.state.set(Phase::Ended);
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a failing [`UpstreamStream`] reports its upstream: the breaker.
#[derive(Clone)]
pub(super) struct FailureSink {
    pub(super) breakers: Arc<dyn Breakers>,
    pub(super) upstream: Arc<str>,
}

/// The balancer's guard of the attempt whose response body streams: the
/// endpoint counts the attempt as in flight until the body ends or is dropped.
struct StreamGuard {
    guard: Box<dyn AttemptGuard>,
    /// When the attempt started.
    started: Instant,
    /// Report a failure mid-stream (false when the attempt already counted
    /// as failed).
    count_failure: bool,
}

/// A streamed upstream response body; see the module docs.
pub struct UpstreamStream {
    prefix: Option<Bytes>,
    inner: Incoming,
    idle: IdleTimer,
    on_failure: Option<FailureSink>,
    /// The balancer's guard of the attempt (see [`UpstreamStream::attach`]).
    guard: Option<StreamGuard>,
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream").finish_non_exhaustive()
    }
}

impl UpstreamStream {
    /// `prefix` (already read from `inner`, may be empty) then the rest of
    /// `inner`, with at most `idle` between frames.
    pub(super) fn new(
        prefix: Bytes,
        inner: Incoming,
        idle: Duration,
        on_failure: Option<FailureSink>,
    ) -> Self {
        Self {
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
            idle: IdleTimer::new(idle),
            on_failure,
            guard: None,
        }
    }

    /// Keeps the attempt's balancer guard (its outcome at the response head
    /// already recorded) until the body ends. With `count_failure` a failure
    /// mid-stream is reported to the balancer as well as to the breaker;
    /// without (the attempt already counted as failed, e.g. a 5xx) to neither,
    /// so it is not counted twice.
    pub(super) fn attach(
        &mut self,
        guard: Box<dyn AttemptGuard>,
        started: Instant,
        count_failure: bool,
    ) {
        if !count_failure {
            self.on_failure = None;
        }
        self.guard = Some(StreamGuard {
            guard,
            started,
            count_failure,
        });
    }

    /// The upstream failed mid-stream: told once to its breaker and balancer.
    fn failed(&mut self) {
        if let Some(s) = self.on_failure.take() {
            s.breakers.record_failure(&s.upstream);
        }
        if let Some(g) = self.guard.take()
            && g.count_failure
        {
            g.guard
                .finish(AttemptOutcome::BodyFailure, g.started.elapsed());
        }
    }
}

impl Body for UpstreamStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            this.idle.touch();
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.idle.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.failed();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.on_failure = None;
                this.guard = None; // the attempt ends
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.poll_expired(cx).0 {
                    tracing::debug!("upstream response body idle timeout");
                    this.failed();
                    return Poll::Ready(Some(Err("upstream response body timed out".into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower() + extra);
        if let Some(u) = inner.upper() {
            hint.set_upper(u + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls the timer once: (expired, started a new wait).
    async fn poll(t: &mut IdleTimer) -> (bool, bool) {
        std::future::poll_fn(|cx| Poll::Ready(t.poll_expired(cx))).await
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_only_time_spent_waiting() {
        let ms = Duration::from_millis;
        let mut t = IdleTimer::new(ms(1000));
        assert_eq!(poll(&mut t).await, (false, true));
        tokio::time::advance(ms(600)).await;
        assert_eq!(poll(&mut t).await, (false, false), "one wait of 600 ms");
        t.touch();
        // The reader does not poll for 5 s (its own peer is slow): not counted.
        tokio::time::advance(ms(5000)).await;
        assert_eq!(poll(&mut t).await, (false, true), "a new wait starts");
        tokio::time::advance(ms(999)).await;
        assert_eq!(poll(&mut t).await, (false, false));
        tokio::time::advance(ms(2)).await;
        assert_eq!(poll(&mut t).await, (true, false), "this wait lasted 1 s");
    }
}
