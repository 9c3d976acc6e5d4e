//! The admin HTTP server of Nexus services: what operators, dashboards and
//! Prometheus read while a service runs. The cache proxy (`nexus-cache`,
//! feature `admin`) and the event consumer (`nexus-consumer`, feature
//! `admin`) both serve it; each supplies only what `/metrics` and `/stats`
//! say, through [`Source`], so the two answer alike.
//!
//! | request | answer |
//! |---|---|
//! | `GET /metrics` | `200`, Prometheus text 0.0.4 |
//! | `GET /stats` | `200`, `application/json` |
//! | `GET /healthz` | `200`, `{"status":"ok"}` |
//! | another method on those paths | `405` `{"error":"method not allowed"}`, `Allow: GET, HEAD` |
//! | any other path | `404` `{"error":"not found"}` |
//!
//! `HEAD` answers like `GET` without the body; every answer carries
//! `Cache-Control: no-store`. Request bodies are never read.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more wait in the
//! listen backlog), a request head must arrive within [`HEADER_TIMEOUT`], a
//! connection lives at most [`CONNECTION_LIFETIME`]; on shutdown the listener
//! closes, idle connections close at once and requests in flight get
//! [`SHUTDOWN_DRAIN`] to finish.
//!
//! ```
//! use std::sync::Arc;
//!
//! struct Counters;
//!
//! impl nexus_admin::Source for Counters {
//!     fn metrics(&self) -> String {
//!         "# TYPE up gauge\nup 1\n# EOF\n".to_owned()
//!     }
//!     fn stats(&self) -> Vec<u8> {
//!         br#"{"requests":0}"#.to_vec()
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(nexus_admin::serve(listener, Arc::new(Counters), async {
//!     let _ = stopped.await;
//! }));
//!
//! // What a request for `/stats` is answered with.
//! let res = nexus_admin::respond(&Counters, &http::Method::GET, "/stats");
//! assert_eq!(res.status(), 200);
//! assert_eq!(res.headers()["content-type"], "application/json");
//!
//! let _ = stop.send(());
//! server.await.expect("admin server task");
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Admin connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a request's head to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection stays open, keep-alive included.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// After shutdown, how long requests in flight may take to finish before
/// their connections are dropped (idle connections close at once).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors and the like).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const JSON: &str = "application/json";

/// What the admin endpoints report, read at request time.
pub trait Source: Send + Sync + 'static {
    /// The `/metrics` Prometheus text exposition.
    fn metrics(&self) -> String;
    /// The `/stats` JSON document.
    fn stats(&self) -> Vec<u8>;
}

/// Serves `source` on `listener` until `shutdown` completes; then stops
/// accepting, gives requests in flight [`SHUTDOWN_DRAIN`] and returns.
pub async fn serve<S: Source>(
    listener: TcpListener,
    source: Arc<S>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    // Bounded by MAX_CONNECTIONS: a task is only spawned with a permit.
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let source = Arc::clone(&source);
        let service = service_fn(move |req: Request<Incoming>| {
            let res = respond(&*source, req.method(), req.uri().path());
            async move { Ok::<_, Infallible>(res) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        conns.spawn(async move {
            // A connection past its lifetime is dropped (closed).
            if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
                tracing::debug!(error = %e, "admin connection error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_DRAIN, graceful.shutdown()).await;
    conns.shutdown().await;
}

/// The answer to `method path`.
pub fn respond<S: Source + ?Sized>(
    source: &S,
    method: &Method,
    path: &str,
) -> Response<Full<Bytes>> {
    if !matches!(path, "/metrics" | "/stats" | "/healthz") {
        return answer(
            StatusCode::NOT_FOUND,
            JSON,
            Bytes::from_static(br#"{"error":"not found"}"#),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut res = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            Bytes::from_static(br#"{"error":"method not allowed"}"#),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/metrics" => answer(StatusCode::OK, PROMETHEUS_TEXT, source.metrics().into()),
        "/stats" => answer(StatusCode::OK, JSON, source.stats().into()),
        _ => answer(
            StatusCode::OK,
            JSON,
            Bytes::from_static(br#"{"status":"ok"}"#),
        ),
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    struct Fixed;

    impl Source for Fixed {
        fn metrics(&self) -> String {
            "up 1\n# EOF\n".to_owned()
        }
        fn stats(&self) -> Vec<u8> {
            br#"{"n":1}"#.to_vec()
        }
    }

    fn parts(res: &Response<Full<Bytes>>) -> (u16, &str, Option<&str>) {
        let h = |name| res.headers().get(name).map(|v| v.to_str().unwrap());
        (
            res.status().as_u16(),
            h(header::CONTENT_TYPE).unwrap(),
            h(header::ALLOW),
        )
    }

    #[test]
    fn routes_answer_alike() {
        let get = |path| respond(&Fixed, &Method::GET, path);
        let prom = "text/plain; version=0.0.4; charset=utf-8";
        assert_eq!(parts(&get("/metrics")), (200, prom, None));
        assert_eq!(parts(&get("/stats")), (200, JSON, None));
        assert_eq!(parts(&get("/healthz")), (200, JSON, None));
        assert_eq!(parts(&get("/stats/x")), (404, JSON, None));
        assert_eq!(parts(&get("/")), (404, JSON, None));
        let head = respond(&Fixed, &Method::HEAD, "/stats");
        assert_eq!(parts(&head), (200, JSON, None));
        for method in [Method::POST, Method::DELETE, Method::PUT] {
            let res = respond(&Fixed, &method, "/metrics");
            assert_eq!(parts(&res), (405, JSON, Some("GET, HEAD")));
        }
        // An unknown path is a 404 whatever the method.
        assert_eq!(respond(&Fixed, &Method::POST, "/x").status(), 404);
        for path in ["/metrics", "/x"] {
            assert_eq!(get(path).headers()[header::CACHE_CONTROL], "no-store");
        }
    }

    async fn request(addr: std::net::SocketAddr, head: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out));
        read.await.unwrap().unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A kept-alive connection that has had its answer.
    async fn answered(addr: std::net::SocketAddr) -> TcpStream {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf));
        let n = n.await.unwrap().unwrap();
        assert!(buf[..n].ends_with(br#"{"status":"ok"}"#));
        s
    }

    #[tokio::test]
    async fn past_max_connections_a_client_waits_for_a_free_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(Fixed), std::future::pending()));
        let mut open = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            open.push(answered(addr).await);
        }
        // One more: connected (listen backlog) but not served.
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 512];
        let early = tokio::time::timeout(Duration::from_millis(300), waiting.read(&mut buf));
        assert!(early.await.is_err(), "answered past MAX_CONNECTIONS");
        // A slot frees up: it is served.
        drop(open.pop());
        let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buf));
        let n = n.await.unwrap().unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        server.abort();
    }

    #[tokio::test]
    async fn serves_over_tcp_and_shutdown_closes_idle_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(Fixed), async {
            let _ = stopped.await;
        }));
        let res = request(
            addr,
            "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        let res = res.await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        assert!(res.ends_with("\r\n\r\n{\"status\":\"ok\"}"), "{res}");

        // A kept-alive connection, idle after its answer, does not hold
        // shutdown back: it is closed at once, not after SHUTDOWN_DRAIN.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /stats HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].ends_with(br#"{"n":1}"#));
        let started = tokio::time::Instant::now();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
        assert!(
            started.elapsed() < SHUTDOWN_DRAIN,
            "{:?}",
            started.elapsed()
        );
        assert_eq!(idle.read(&mut buf).await.unwrap(), 0, "closed");
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
