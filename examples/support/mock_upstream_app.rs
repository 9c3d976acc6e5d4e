//! The mock upstream service shared by the `mock_upstream` and `full_stack`
//! examples: `/products`, `/health` and `/echo` over HTTP/1.1 and HTTP/2.
//!
//! `/echo` answers with the request's method, URI and headers as JSON, so tests
//! and people can see what the gateway forwarded. A latency is added to every
//! answer and a deterministic share of requests can be answered with a 500.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

/// The product list every mock answers on `/products`.
pub(crate) const PRODUCTS: &str = r#"[{"id":1,"name":"Laptop","price":999.99,"stock":12},{"id":2,"name":"Phone","price":599.5,"stock":40},{"id":3,"name":"Headphones","price":149.0,"stock":85}]"#;

/// How long open connections may finish after shutdown before they are dropped.
pub(crate) const DRAIN_DEADLINE: Duration = Duration::from_secs(2);

/// Behaviour of one mock upstream.
#[derive(Debug, Clone)]
pub(crate) struct MockOptions {
    /// Reported in bodies and in the `x-upstream` header.
    pub(crate) name: String,
    /// Added delay per request.
    pub(crate) latency: Duration,
    /// Share of requests answered with a 500, `0.0..=1.0`.
    pub(crate) error_rate: f64,
}

struct State {
    opts: MockOptions,
    counter: AtomicU64,
}

fn json(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = header::HeaderValue::from_str(name) {
        res.headers_mut().insert("x-upstream", v);
    }
    res
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !state.opts.latency.is_zero() {
        tokio::time::sleep(state.opts.latency).await;
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let name = &state.opts.name;
    if state.opts.error_rate > 0.0 {
        // Deterministic spread: request n fails when its scrambled value falls below the rate.
        let x = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
        if x < state.opts.error_rate {
            return Ok(json(
                StatusCode::INTERNAL_SERVER_ERROR,
                name,
                r#"{"error":"injected failure"}"#,
            ));
        }
    }
    let res = match req.uri().path() {
        "/products" => json(StatusCode::OK, name, PRODUCTS),
        "/health" => json(
            StatusCode::OK,
            name,
            serde_json::json!({ "status": "ok", "upstream": name }).to_string(),
        ),
        "/echo" => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                    )
                })
                .collect();
            let body = serde_json::json!({
                "upstream": name,
                "method": req.method().as_str(),
                "uri": req.uri().to_string(),
                "headers": headers,
            });
            json(StatusCode::OK, name, body.to_string())
        }
        _ => json(StatusCode::NOT_FOUND, name, r#"{"error":"not found"}"#),
    };
    Ok(res)
}

/// Serves the mock on `listener` until `shutdown` completes, then stops
/// accepting and lets open connections finish (bounded by [`DRAIN_DEADLINE`]).
pub(crate) async fn serve(
    listener: TcpListener,
    opts: MockOptions,
    shutdown: impl Future<Output = ()>,
) {
    let state = Arc::new(State {
        opts,
        counter: AtomicU64::new(0),
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| handle(state.clone(), req)),
                ).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown()).await;
}
