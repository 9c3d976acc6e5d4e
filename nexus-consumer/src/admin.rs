//! The consumer's admin HTTP server (plain HTTP/1.1, loopback by default).
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /stats` | JSON [`StatsSnapshot`](crate::StatsSnapshot), plus a `producer` object with [`Admin::producer`] |
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
use nexus_events::EmitterStatsHandle;
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
    producer: Option<EmitterStatsHandle>,
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
    Admin::new(stats).serve(listener, shutdown).await
}

/// The admin server with options; [`serve`] is `Admin::new(stats).serve(..)`.
#[derive(Debug, Clone)]
pub struct Admin {
    stats: Arc<Stats>,
    producer: Option<EmitterStatsHandle>,
}

impl Admin {
    /// An admin server for `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            stats,
            producer: None,
        }
    }

    /// Also reports an event producer running in the same process (as in
    /// `full_stack`): a `producer` object in `/stats` and the
    /// `nexus_events_*` metrics (see [`crate::metrics::register_producer`]).
    pub fn producer(mut self, producer: EmitterStatsHandle) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Serves until `shutdown` resolves (see [`serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut registry = crate::metrics::registry(self.stats.clone());
        if let Some(p) = &self.producer {
            crate::metrics::register_producer(&mut registry, p.clone());
        }
        let state = Arc::new(State {
            stats: self.stats,
            producer: self.producer,
            registry,
        });
        run(listener, state, shutdown).await
    }
}

async fn run(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
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
        "/stats" => body(StatusCode::OK, "application/json", stats_json(state)),
        _ => text(StatusCode::OK, "ok\n"),
    }
}

fn stats_json(state: &State) -> Bytes {
    let mut json = serde_json::to_value(state.stats.snapshot()).unwrap_or_default();
    if let (Some(p), Some(obj)) = (&state.producer, json.as_object_mut()) {
        let s = p.get();
        obj.insert(
            "producer".to_owned(),
            serde_json::json!({
                "emitted": s.emitted,
                "sent": s.sent,
                "failed": s.failed,
                "dropped": s.dropped(),
                "dropped_queue_full": s.dropped_full,
                "queued": s.queued,
                "queue_capacity": s.queue_capacity,
            }),
        );
    }
    serde_json::to_vec(&json).unwrap_or_default().into()
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
