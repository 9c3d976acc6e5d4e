//! Serving one client connection with bounded time for every state it can be in.
//!
//! - Protocol sniff: the first bytes must show the protocol (diverge from, or
//!   complete, the 24-byte HTTP/2 preface) within `server.header_read_timeout_ms`;
//!   silent or half-preface connections are closed.
//! - HTTP/1: each request's headers get `server.header_read_timeout_ms` from
//!   their first byte (the first request's from the accept, sniff included),
//!   timed here, not by hyper: hyper 1.x starts its header timer as soon as a
//!   keep-alive connection goes idle, which would cut idle keep-alive at the
//!   header timeout instead of `server.idle_timeout_ms`. [`MAX_HEADER_BUF`]
//!   bounds the read buffer (larger headers get `431`).
//! - HTTP/2: keep-alive PINGs detect dead peers.
//! - Both: a connection with no request in flight (counted here, until the
//!   response body is done) for `server.idle_timeout_ms` is shut down
//!   gracefully, and dropped once nothing has been written to it for a
//!   header-read timeout (a slow but reading client still gets the rest of
//!   the response hyper had already taken).
//! - Both: a connection whose socket has refused every write for
//!   `server.send_timeout_ms` (the client takes none of the data the gateway
//!   has for it) is dropped (nginx `send_timeout`).
//!
//! Cost on the hot path: the IO wrapper does a few relaxed/acquire atomic
//! operations per read and write; it reads the clock only when a request head
//! starts on an idle HTTP/1 connection (once per request) and when a write
//! first blocks after making progress (once per stall), never per successful
//! write.
//! - Shutdown: the accept loop's stop signal shuts every connection down
//!   gracefully (in-flight requests finish).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::FutureExt as _;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{ConnService, Stack};
use crate::config::ServerSettings;
use tower::util::Either;

/// Most bytes hyper buffers while reading an HTTP/1 request head (and body
/// chunks): bounds the memory a connection can pin with never-ending headers.
/// Headers larger than this get `431 Request Header Fields Too Large`.
/// (nginx: `large_client_header_buffers 4 8k`.)
pub const MAX_HEADER_BUF: usize = 64 * 1024;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Protocol builders and limits shared by all connections of an accept loop.
pub(super) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    limits: ServerSettings,
}

impl Protocols {
    pub(super) fn new(limits: ServerSettings) -> Self {
        let mut h1 = http1::Builder::new();
        // The header timer is `drive`'s (see the module docs); hyper keeps only
        // a backstop that never fires before it or the idle timer.
        h1.timer(TokioTimer::new())
            .header_read_timeout(
                limits.header_read_timeout.max(limits.idle_timeout) + limits.header_read_timeout,
            )
            .keep_alive(true)
            .max_buf_size(MAX_HEADER_BUF);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keepalive_interval)
            .keep_alive_timeout(limits.http2_keepalive_timeout);
        Self {
            http1: h1,
            http2: h2,
            limits,
        }
    }
}

/// Which protocol the client speaks.
enum Proto {
    Http1,
    Http2,
}

/// Reads until the bytes received complete or diverge from the HTTP/2 preface.
/// `None`: the client closed (or failed) first.
async fn sniff(stream: &mut TcpStream) -> Option<(Proto, BytesMut)> {
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Some((Proto::Http1, buf));
        }
        if n == H2_PREFACE.len() {
            return Some((Proto::Http2, buf));
        }
    }
}

/// Serves one accepted connection to its end (or until `stop` and drain).
pub(super) async fn serve(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    service: Stack,
    protocols: Arc<Protocols>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = protocols.limits;
    // Created at the accept: the first HTTP/1 request's head is timed from here.
    let activity = Arc::new(Activity::new());
    let sniffed = tokio::select! {
        r = tokio::time::timeout(limits.header_read_timeout, sniff(&mut stream)) => r,
        _ = stop.changed() => return,
    };
    let (proto, prefix) = match sniffed {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(_) => {
            tracing::debug!(%peer, "connection closed: no request within the header read timeout");
            return;
        }
    };
    if matches!(proto, Proto::Http1) {
        // HTTP/1 heads are timed by `drive`; the first one started at the accept.
        activity.time_heads.store(true, Ordering::Relaxed);
        activity.head_started_ms.store(1, Ordering::Relaxed);
    }
    let io = TokioIo::new(Rewind {
        prefix: prefix.freeze(),
        inner: stream,
        activity: activity.clone(),
    });
    // The plain stack's entry layer takes the peer from its per-connection
    // copy; the boxed (traced) stack still gets it as an extension.
    let (service, insert_peer) = match service {
        Either::Right(entry) => (Either::Right(entry.for_peer(peer)), false),
        Either::Left(boxed) => (Either::Left(boxed), true),
    };
    let svc = ConnService::new(service);
    let act = activity.clone();
    let hyper_svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if insert_peer {
            req.extensions_mut().insert::<std::net::SocketAddr>(peer);
        }
        let guard = InFlight::begin(&act);
        svc.call(req).map(move |r| {
            r.map(|resp| {
                resp.map(|body| Tracked {
                    body,
                    _guard: guard,
                })
            })
        })
    });
    match proto {
        Proto::Http1 => {
            let conn = protocols.http1.serve_connection(io, hyper_svc);
            drive(conn, &activity, limits, &mut stop).await;
        }
        Proto::Http2 => {
            let conn = protocols.http2.serve_connection(io, hyper_svc);
            drive(conn, &activity, limits, &mut stop).await;
        }
    }
}

/// hyper's connection types, shut down the same way.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn shutdown(self: Pin<&mut Self>);
}

impl<I, S> Graceful for http1::Connection<I, S>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn shutdown(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Why a connection is being shut down.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Idle too long: dropped once nothing was written to it for a
    /// header-read timeout with no request in flight.
    Idle,
    /// Gateway shutdown: the accept loop's drain deadline bounds it.
    Stop,
}

/// Polls `conn` to completion, shutting it down gracefully on `stop` or after
/// `limits.idle_timeout` without a request in flight, and dropping it when an
/// HTTP/1 head takes longer than `limits.header_read_timeout` or the client
/// takes no data for `limits.send_timeout`.
async fn drive<C: Graceful>(
    conn: C,
    activity: &Activity,
    limits: ServerSettings,
    stop: &mut watch::Receiver<bool>,
) {
    tokio::pin!(conn);
    // Fires at once: the first check arms it (a head may already be timed).
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    // Lives across wakes: re-creating it on every wake of the connection
    // (several per request) would register and deregister a waiter each time.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut closing = Closing::No;
    // Writes counted when the idle shutdown was last checked.
    let mut writes_seen = 0;
    std::future::poll_fn(|cx| {
        loop {
            if let Poll::Ready(r) = conn.as_mut().poll(cx) {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with error");
                }
                return Poll::Ready(());
            }
            // A finished `changed()` is never polled again (`Closing::Stop`).
            if closing != Closing::Stop && stopped.as_mut().poll(cx).is_ready() {
                if closing == Closing::No {
                    conn.as_mut().shutdown();
                }
                closing = Closing::Stop;
                continue;
            }
            // The IO wrapper is only polled inside `conn.poll` above, on this
            // task, so a flag it raised (it started timing a head or a blocked
            // write) is seen here without a wake-up of its own.
            let rearm = activity.rearm.swap(false, Ordering::Relaxed);
            if !rearm && timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match activity.check(&limits, &mut closing, &mut writes_seen) {
                Check::Drop(why) => {
                    tracing::debug!(reason = why, "connection dropped");
                    return Poll::Ready(());
                }
                Check::Shutdown(wait) => {
                    tracing::debug!("closing idle connection");
                    conn.as_mut().shutdown();
                    timer.as_mut().reset(Instant::now() + wait);
                }
                Check::Wait(wait) => {
                    timer.as_mut().reset(Instant::now() + wait);
                    // Registers the new deadline; the connection was just
                    // polled, so it needs no second poll.
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
            }
        }
    })
    .await;
}

/// What [`Activity::check`] decided.
enum Check {
    /// Drop the connection now (the reason, for the log).
    Drop(&'static str),
    /// Shut down gracefully for idleness, check again after the wait.
    Shutdown(Duration),
    /// Check again after the wait.
    Wait(Duration),
}

/// One connection's state shared by its service, its IO wrapper and `drive`.
///
/// Times are milliseconds since `start`, stored `+ 1` so that 0 means "none".
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to when `in_flight` last dropped to 0.
    idle_since_ms: AtomicU64,
    /// Whether request heads are timed here (HTTP/1 only: an idle HTTP/2
    /// client legitimately sends SETTINGS, PING and WINDOW_UPDATE frames).
    time_heads: AtomicBool,
    /// When the first byte of a request head arrived with no request in
    /// flight (`+ 1`, 0: no head being read).
    head_started_ms: AtomicU64,
    /// When writes started being refused without any progress since
    /// (`+ 1`, 0: the last write made progress).
    blocked_since_ms: AtomicU64,
    /// Writes that made progress (wrapping; only compared for change).
    writes: AtomicU64,
    /// Raised by the IO wrapper when it starts timing something; `drive`
    /// checks it after each poll of the connection (same task).
    rearm: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            time_heads: AtomicBool::new(false),
            head_started_ms: AtomicU64::new(0),
            blocked_since_ms: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            rearm: AtomicBool::new(false),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection has had no request in flight; `None` while busy.
    fn idle_for(&self, now: u64) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(now.saturating_sub(since)))
    }

    /// How long a `+ 1`-encoded stamp has been set; `None` if unset.
    fn age(stamp: &AtomicU64, now: u64) -> Option<Duration> {
        match stamp.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis((now + 1).saturating_sub(t))),
        }
    }

    /// The IO wrapper read bytes: starts timing a head if none is in flight.
    fn on_read(&self) {
        if self.time_heads.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
        {
            self.head_started_ms
                .store(self.elapsed_ms() + 1, Ordering::Release);
            self.rearm.store(true, Ordering::Relaxed);
        }
    }

    /// The IO wrapper's write made progress (`true`) or was refused.
    fn on_write(&self, progressed: bool) {
        if progressed {
            self.writes.fetch_add(1, Ordering::Relaxed);
            if self.blocked_since_ms.load(Ordering::Relaxed) != 0 {
                self.blocked_since_ms.store(0, Ordering::Release);
            }
        } else if self.blocked_since_ms.load(Ordering::Relaxed) == 0 {
            self.blocked_since_ms
                .store(self.elapsed_ms() + 1, Ordering::Release);
            self.rearm.store(true, Ordering::Relaxed);
        }
    }

    /// `drive`'s timer fired (or was re-armed): enforces the limits and says
    /// when to look again.
    fn check(
        &self,
        limits: &ServerSettings,
        closing: &mut Closing,
        writes_seen: &mut u64,
    ) -> Check {
        let now = self.elapsed_ms();
        // Never sleep longer than this: bounds lateness should a stamp be
        // missed, at the cost of one wake-up per idle timeout.
        let mut wait = limits.idle_timeout;
        // Every state, shutdown included (the drain deadline bounds that too).
        if let Some(d) = Self::age(&self.blocked_since_ms, now) {
            if d >= limits.send_timeout {
                return Check::Drop("client took no data within the send timeout");
            }
            wait = wait.min(limits.send_timeout - d);
        }
        if let Some(d) = Self::age(&self.head_started_ms, now) {
            if d >= limits.header_read_timeout {
                return Check::Drop("request headers not received within the header read timeout");
            }
            wait = wait.min(limits.header_read_timeout - d);
        }
        let idle_for = self.idle_for(now);
        match *closing {
            Closing::Stop => {}
            Closing::Idle => {
                if idle_for.is_some() {
                    // Shut down for idleness and the peer still holds on: fine
                    // while it still takes the response hyper had queued (a
                    // slow reader), dropped once nothing was written for a
                    // header-read timeout (e.g. it never acknowledges HTTP/2
                    // GOAWAY's PING).
                    let writes = self.writes.load(Ordering::Relaxed);
                    if writes == *writes_seen {
                        return Check::Drop("idle connection did not close in time");
                    }
                    *writes_seen = writes;
                }
                // Else a request slipped in before the shutdown took effect.
                wait = wait.min(limits.header_read_timeout);
            }
            Closing::No => match idle_for {
                Some(d) if d >= limits.idle_timeout => {
                    *closing = Closing::Idle;
                    *writes_seen = self.writes.load(Ordering::Relaxed);
                    return Check::Shutdown(wait.min(limits.header_read_timeout));
                }
                Some(d) => wait = wait.min(limits.idle_timeout - d),
                None => {}
            },
        }
        Check::Wait(wait)
    }
}

/// One request in flight, from `call` until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        // Its head is complete.
        activity.head_started_ms.store(0, Ordering::Release);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since_ms.store(a.elapsed_ms(), Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    struct Tracked<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket with the sniffed bytes put back in front; tells `Activity`
/// about reads (head starts) and writes (progress, or refused).
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Rewind {
    /// Records a write's outcome. A write that is refused (`Pending`) means
    /// the gateway has data the client's socket will not take; the first
    /// refusal after progress starts the send timeout, any write that moves
    /// bytes ends it. No clock read on the progress path.
    fn wrote(&self, r: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        match &r {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.on_write(true),
            Poll::Pending => self.activity.on_write(false),
            Poll::Ready(_) => {}
        }
        r
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
