//! The admin HTTP server (crate feature `admin`): what operators and
//! dashboards read while the proxy runs.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition (0.0.4), `nexus_cache_*` |
//! | `GET /stats` | JSON summary: clients, commands, GET hits/misses and hit ratio, collapsed calls, hot keys, held readers, upstream latency, every mechanism counter |
//! | `GET /healthz` | `{"status":"ok"}` while the proxy serves |
//!
//! Anything else is `404` (`405` for another method on a known path). The
//! server is HTTP/1.1 on hyper, started by [`Proxy::serve`](crate::Proxy::serve)
//! when [`ProxyConfig::admin`](crate::ProxyConfig::admin) is set and stopped
//! with the proxy. It reads the same atomics as `NEXUS.STATS` at request time;
//! the command path does not know it exists.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] admin connections (more are closed at
//! once), request headers within [`HEADER_TIMEOUT`], a connection lives at
//! most [`CONNECTION_LIFETIME`].

mod prometheus;
mod stats;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::hotkeys::HotKeys;
use crate::metrics::Metrics;
use crate::policy::metrics::MechanismMetrics;

/// Admin connections served at once; further ones are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a request's headers to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an admin connection stays open, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const JSON: &str = "application/json";

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) mechanisms: Arc<MechanismMetrics>,
    /// The live hot-key detector; `None` without a policy.
    pub(crate) hot: Option<Arc<HotKeys>>,
}

#[derive(Debug)]
struct App {
    state: AdminState,
    registry: Registry,
}

/// Serves `listener` until `shutdown` is cancelled; open admin connections
/// are then dropped.
pub(crate) fn spawn(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let app = Arc::new(App {
        registry: prometheus::registry(state.clone()),
        state,
    });
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Bounded by MAX_CONNECTIONS: a task is only spawned with a permit.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            continue; // over the bound: the stream is dropped (closed)
                        };
                        let app = Arc::clone(&app);
                        conns.spawn(async move {
                            serve_connection(stream, app).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        conns.shutdown().await;
    })
}

async fn serve_connection(stream: TcpStream, app: Arc<App>) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let res = respond(&app, req.method(), req.uri().path());
        async move { Ok::<_, Infallible>(res) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    // A connection past its lifetime is simply dropped (closed).
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        tracing::debug!(error = %e, "admin connection error");
    }
}

fn respond(app: &App, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let known = matches!(path, "/metrics" | "/stats" | "/healthz");
    if !known {
        return text(
            StatusCode::NOT_FOUND,
            JSON,
            r#"{"error":"not found"}"#.into(),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut res = text(
            StatusCode::METHOD_NOT_ALLOWED,
            JSON,
            r#"{"error":"method not allowed"}"#.into(),
        );
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/metrics" => text(
            StatusCode::OK,
            PROMETHEUS_TEXT,
            prometheus::render(&app.registry),
        ),
        "/stats" => text(StatusCode::OK, JSON, stats::render(&app.state).to_string()),
        _ => text(StatusCode::OK, JSON, r#"{"status":"ok"}"#.into()),
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    res
}
