//! Serving one client connection with bounded time for every state it can be in.
//!
//! - Protocol sniff: the first bytes must show the protocol (diverge from, or
//!   complete, the 24-byte HTTP/2 preface) within `server.header_read_timeout_ms`;
//!   silent or half-preface connections are closed.
//! - HTTP/1: hyper's `header_read_timeout` bounds each request's headers and
//!   [`MAX_HEADER_BUF`] its read buffer (larger headers get `431`).
//! - HTTP/2: keep-alive PINGs detect dead peers.
//! - Both: a connection with no request in flight (counted here, until the
//!   response body is done) for `server.idle_timeout_ms` is shut down
//!   gracefully, and dropped if it is not gone one header-read timeout later.
//! - Shutdown: the accept loop's stop signal shuts every connection down
//!   gracefully (in-flight requests finish).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
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
    let io = TokioIo::new(Rewind {
        prefix: prefix.freeze(),
        inner: stream,
    });
    let activity = Arc::new(Activity::new());
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
    /// Idle too long: dropped if still there a header-read timeout later with
    /// no request in flight.
    Idle,
    /// Gateway shutdown: the accept loop's drain deadline bounds it.
    Stop,
}

/// Polls `conn` to completion, shutting it down gracefully on `stop` or after
/// `limits.idle_timeout` without a request in flight.
async fn drive<C: Graceful>(
    conn: C,
    activity: &Activity,
    limits: ServerSettings,
    stop: &mut watch::Receiver<bool>,
) {
    tokio::pin!(conn);
    let idle = limits.idle_timeout;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut closing = Closing::No;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with error");
                }
                return;
            }
            _ = stop.changed(), if closing != Closing::Stop => {
                if closing == Closing::No {
                    conn.as_mut().shutdown();
                }
                closing = Closing::Stop;
            }
            () = timer.as_mut(), if closing != Closing::Stop => {
                let idle_for = activity.idle_for();
                if closing == Closing::Idle {
                    if idle_for.is_some() {
                        // Shut down for idleness and the peer still holds on
                        // (e.g. never acknowledges HTTP/2 GOAWAY's PING).
                        tracing::debug!("idle connection did not close in time; dropped");
                        return;
                    }
                    // A request slipped in before the shutdown took effect.
                    timer.as_mut().reset(Instant::now() + limits.header_read_timeout);
                    continue;
                }
                match idle_for {
                    Some(d) if d >= idle => {
                        tracing::debug!(?d, "closing idle connection");
                        conn.as_mut().shutdown();
                        closing = Closing::Idle;
                        timer.as_mut().reset(Instant::now() + limits.header_read_timeout);
                    }
                    Some(d) => timer.as_mut().reset(Instant::now() + (idle - d)),
                    None => timer.as_mut().reset(Instant::now() + idle),
                }
            }
        }
    }
}

/// Requests in flight on one connection and when it last became idle.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to when `in_flight` last dropped to 0.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long the connection has had no request in flight; `None` while busy.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::Acquire);
        Some(Duration::from_millis(
            self.elapsed_ms().saturating_sub(since),
        ))
    }
}

/// One request in flight, from `call` until its response body is dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
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

/// The socket with the sniffed bytes put back in front.
struct Rewind {
    prefix: Bytes,
    inner: TcpStream,
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
