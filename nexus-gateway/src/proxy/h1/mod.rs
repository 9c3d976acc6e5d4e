//! The HTTP/1.1 upstream client: pooled keep-alive connections on
//! `hyper::client::conn::http1`, driven from the request's own task.
//!
//! hyper-util's pooled client runs every connection as a task of its own; a
//! request reaches it through a channel and the response comes back through a
//! oneshot, so each proxied request costs two extra task wake-ups plus the
//! pool's key, checkout and boxed futures. Here a request takes an idle
//! `(SendRequest, Connection)` pair from the per-thread [`IdlePool`] (or
//! connects), and polls the connection itself together with the response
//! future: the write, the read of the response head and, for a body of known
//! length up to [`SMALL_BODY`], the read of the body all happen in the
//! request's task. The pair then goes back to the pool if hyper says it is
//! ready for another request.
//!
//! Streaming stays streaming: with a request body, or a response body that is
//! larger than [`SMALL_BODY`] or of unknown length, the connection is handed to
//! a task of its own (as hyper-util does for every request) which polls it until
//! the exchange is over and then gives it back to the pool.
//!
//! Keep-alive race: an idle connection the upstream closed just before it was
//! taken fails the request *before it is written*; hyper then returns the
//! request, and it is sent again on a fresh connection (hyper-util's
//! `retry_canceled_requests`, which only applies to reused connections). A
//! request that was written is not resent here; the proxy's attempt loop
//! retries it if it is replayable.

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

use super::UpstreamBody;
use super::forward::SMALL_BODY;
use super::pool::IdlePool;
use crate::body::GatewayBody;

/// How long an idle connection is kept (hyper-util's default, which the gateway used).
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The target has no `http` authority (the HTTP/1.1 client speaks cleartext only).
    #[error("upstream target {0} is not an http:// URL with a host")]
    Target(String),
    /// TCP connect failed.
    #[error("connect to {authority}: {source}")]
    Connect {
        /// The endpoint.
        authority: Authority,
        /// The socket error.
        source: std::io::Error,
    },
    /// TCP connect did not finish within the call timeout.
    #[error("connect to {0}: timed out")]
    ConnectTimeout(Authority),
    /// HTTP/1.1 protocol or I/O error on the connection.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The response body of known length broke off.
    #[error("upstream body: {0}")]
    Body(crate::body::BoxError),
    /// The pooled HTTP/2 client failed.
    #[error(transparent)]
    Pooled(#[from] hyper_util::client::legacy::Error),
}

/// A connection and its request handle. Boxed so that moving it between the
/// pool and a request's future moves a pointer, not hyper's buffers.
struct Conn {
    tx: http1::SendRequest<UpstreamBody>,
    conn: http1::Connection<TokioIo<TcpStream>, UpstreamBody>,
}

impl Conn {
    /// Polls the connection once; `true` once it is finished (closed or failed).
    fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        Pin::new(&mut self.conn).poll(cx).is_ready()
    }

    /// Polls the connection once with a no-op waker before it goes idle; `true`
    /// if it finished. The last poll left this task's waker in hyper's request
    /// channel and the socket's readiness; the next request on the connection
    /// (usually another client connection's task) would wake this task in vain.
    fn quiesce(&mut self) -> bool {
        self.poll_done(&mut Context::from_waker(Waker::noop()))
    }

    /// Idle and still open, as far as hyper knows without polling it.
    fn usable(&self) -> bool {
        self.tx.is_ready() && !self.tx.is_closed()
    }
}

/// Polls `fut`, which only the connection completes: while this task drives the
/// connection (`driving`), with a no-op waker, since every poll of the
/// connection is followed by a poll of `fut` and the connection's socket wakes
/// the task; hyper's hand-over of the response (a oneshot) would otherwise wake
/// the task once more for nothing. Otherwise (the connection has its own task
/// or is finished) with the task's waker.
fn poll_quiet<F: Future>(driving: bool, fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    if driving {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    } else {
        fut.poll(cx)
    }
}

/// A finished connection is dropped (`None`) so it is never polled again.
fn drive(conn: &mut Option<Box<Conn>>, cx: &mut Context<'_>) {
    if conn.as_mut().is_some_and(|c| c.poll_done(cx)) {
        *conn = None;
    }
}

/// Per-thread pooled HTTP/1.1 connections; cheap to clone.
#[derive(Clone)]
pub(super) struct H1Client {
    inner: Arc<Inner>,
}

struct Inner {
    pool: IdlePool<Box<Conn>>,
    builder: http1::Builder,
    connect_timeout: Duration,
}

/// Result of one exchange on one connection.
enum Attempt {
    Done(Response<GatewayBody>),
    /// The connection closed before the request was written: here it is back.
    Unsent(Request<UpstreamBody>, hyper::Error),
    Failed(UpstreamError),
}

impl H1Client {
    /// `max_idle` idle connections per endpoint and thread slot (0: no pooling).
    pub(super) fn new(max_idle: usize, connect_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool: IdlePool::new(max_idle, IDLE_TIMEOUT),
                builder: http1::Builder::new(),
                connect_timeout,
            }),
        }
    }

    /// Sends `req` (an absolute `http://` URI; sent in origin form) and returns
    /// the response; a body of known length up to [`SMALL_BODY`] is already read
    /// ([`GatewayBody::Full`]), any other streams ([`GatewayBody::Stream`]).
    /// The caller bounds the whole call with its timeout.
    pub(super) async fn request(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<GatewayBody>, UpstreamError> {
        // Taken apart by value: cloning a freshly built path would allocate.
        let target = std::mem::take(req.uri_mut()).into_parts();
        let authority = match (target.scheme, target.authority) {
            (Some(s), Some(a)) if s == Scheme::HTTP => a,
            (s, a) => {
                let scheme = s.map_or_else(String::new, |s| s.to_string());
                let host = a.map_or_else(String::new, |a| a.to_string());
                return Err(UpstreamError::Target(format!("{scheme}://{host}")));
            }
        };
        *req.uri_mut() = target
            .path_and_query
            .map_or_else(|| Uri::from_static("/"), Uri::from);
        let mut reuse = true;
        loop {
            let pooled = if reuse {
                self.inner.pool.take(&authority, |c| c.usable())
            } else {
                None
            };
            let reused = pooled.is_some();
            let conn = match pooled {
                Some(c) => c,
                None => self.connect(&authority).await?,
            };
            match self.exchange(&authority, conn, req).await {
                Attempt::Done(res) => return Ok(res),
                // Keep-alive race: once, on a fresh connection.
                Attempt::Unsent(r, _) if reused => {
                    tracing::debug!(upstream = %authority, "pooled connection closed; resending on a new one");
                    req = r;
                    reuse = false;
                }
                Attempt::Unsent(_, e) => return Err(e.into()),
                Attempt::Failed(e) => return Err(e),
            }
        }
    }

    async fn exchange(
        &self,
        authority: &Authority,
        mut conn: Box<Conn>,
        req: Request<UpstreamBody>,
    ) -> Attempt {
        let streaming_request = !req.body().is_end_stream();
        let sent = conn.tx.try_send_request(req);
        let mut conn = Some(conn);
        if streaming_request {
            // The request body streams from the client: the connection gets its
            // own task from the start, as with hyper-util.
            self.spawn_driver(authority, &mut conn);
        }
        let mut sent = pin!(sent);
        let res = poll_fn(|cx| {
            drive(&mut conn, cx);
            poll_quiet(conn.is_some(), sent.as_mut(), cx)
        })
        .await;
        let res = match res {
            Ok(res) => res,
            Err(mut e) => {
                return match e.take_message() {
                    Some(req) => Attempt::Unsent(req, e.into_error()),
                    None => Attempt::Failed(e.into_error().into()),
                };
            }
        };
        let small = res
            .body()
            .size_hint()
            .exact()
            .is_some_and(|n| n <= SMALL_BODY as u64);
        if !small {
            self.spawn_driver(authority, &mut conn);
            return Attempt::Done(res.map(GatewayBody::Stream));
        }
        let (parts, body) = res.into_parts();
        let mut read = pin!(crate::body::read_bounded(body, SMALL_BODY));
        let read = poll_fn(|cx| {
            drive(&mut conn, cx);
            poll_quiet(conn.is_some(), read.as_mut(), cx)
        })
        .await;
        let body = match read {
            Ok(b) => b,
            Err(e) => {
                let e = e.unwrap_or_else(|| "longer than its declared length".into());
                return Attempt::Failed(UpstreamError::Body(e));
            }
        };
        if conn.as_ref().is_some_and(|c| !c.usable()) {
            // Not idle yet (e.g. the request body is still being written): its
            // own task gives it back once it is.
            self.spawn_driver(authority, &mut conn);
        } else if let Some(mut c) = conn
            && !c.quiesce()
        {
            self.inner.pool.give_back(authority, c);
        }
        Attempt::Done(Response::from_parts(parts, GatewayBody::from(body)))
    }

    /// Moves the connection (if any is left) into a task that polls it until the
    /// current exchange is over, then gives it back to the pool (or drops it if
    /// the connection closed).
    fn spawn_driver(&self, authority: &Authority, conn: &mut Option<Box<Conn>>) {
        let Some(mut c) = conn.take() else { return };
        let inner = self.inner.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let idle = poll_fn(|cx| {
                if c.poll_done(cx) {
                    return Poll::Ready(false);
                }
                c.tx.poll_ready(cx).map(|r| r.is_ok())
            })
            .await;
            if idle && !c.quiesce() {
                inner.pool.give_back(&authority, c);
            }
        });
    }

    async fn connect(&self, authority: &Authority) -> Result<Box<Conn>, UpstreamError> {
        let connect = tcp_connect(authority);
        let stream = match tokio::time::timeout(self.inner.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(UpstreamError::Connect {
                    authority: authority.clone(),
                    source,
                });
            }
            Err(_) => return Err(UpstreamError::ConnectTimeout(authority.clone())),
        };
        let (tx, conn) = self.inner.builder.handshake(TokioIo::new(stream)).await?;
        Ok(Box::new(Conn { tx, conn }))
    }
}

/// Connects to the authority's addresses in turn (an IP literal needs no
/// resolver; a name goes through tokio's, on the blocking pool), with
/// `TCP_NODELAY` and `SO_KEEPALIVE`.
async fn tcp_connect(authority: &Authority) -> std::io::Result<TcpStream> {
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = authority.port_u16().unwrap_or(80);
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_keepalive(true)?;
        socket.set_nodelay(true)?;
        match socket.connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
    }))
}

#[cfg(test)]
mod tests;
