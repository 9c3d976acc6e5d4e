//! The consumer's admin HTTP server (plain HTTP/1.1, loopback by default).
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /stats` | JSON [`StatsSnapshot`](crate::StatsSnapshot) |
//! | `GET /healthz` | `ok` |
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections (more wait in the accept
//! queue), request heads must arrive within [`HEADER_TIMEOUT`], a connection
//! lives at most [`CONNECTION_LIFETIME`]. Request bodies are never read.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::Stats;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Bound on receiving a request head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one connection's life.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long open connections may finish their request after shutdown.
const DRAIN: Duration = Duration::from_secs(1);

struct State {
    stats: Arc<Stats>,
    registry: Registry,
}

/// Serves `/metrics`, `/stats` and `/healthz` for `stats` on `listener`
/// until `shutdown` resolves; then lets open connections finish (bounded)
/// and returns.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let state = Arc::new(State {
        registry: crate::metrics::registry(stats.clone()),
        stats,
    });
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, _peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let state = state.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, conn).await;
                }
                () = lifetime => {}
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN * 2, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

/// Completes once `true` was sent (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn route(state: &State, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/stats" | "/healthz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => body(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::encode(&state.registry).into(),
        ),
        "/stats" => body(
            StatusCode::OK,
            "application/json",
            serde_json::to_vec(&state.stats.snapshot())
                .unwrap_or_default()
                .into(),
        ),
        _ => text(StatusCode::OK, "ok\n"),
    }
}

fn text(status: StatusCode, s: &'static str) -> Response<Full<Bytes>> {
    body(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(s.as_bytes()),
    )
}

fn body(status: StatusCode, content_type: &'static str, b: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(b));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
