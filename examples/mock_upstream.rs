//! A mock upstream service for the gateway: `/products`, `/health` and `/echo`.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --port 3001
//! cargo run --release --example mock_upstream -- --port 3002 --latency-ms 50 --error-rate 0.2
//! ```
//!
//! `/echo` answers with the request's method, URI and headers as JSON, so tests and
//! people can see what the gateway forwarded. `--latency-ms` delays every answer,
//! `--error-rate` (0.0..=1.0) answers that share of requests with a 500. Binds to
//! 127.0.0.1 only (mock services should not be reachable from outside). Speaks
//! HTTP/1.1 and HTTP/2 (prior knowledge).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

const USAGE: &str = "\
Usage: mock_upstream [--port PORT] [--latency-ms MS] [--error-rate RATE] [--name NAME]

  --port PORT        port on 127.0.0.1            [default: 3001]
  --latency-ms MS    added delay per request      [default: 0]
  --error-rate RATE  share of 500 answers, 0..=1  [default: 0]
  --name NAME        reported in bodies and the x-upstream header [default: mock-PORT]";

const PRODUCTS: &str = r#"[{"id":1,"name":"Laptop","price":999.99,"stock":12},{"id":2,"name":"Phone","price":599.5,"stock":40},{"id":3,"name":"Headphones","price":149.0,"stock":85}]"#;

struct Opts {
    port: u16,
    latency: Duration,
    error_rate: f64,
    name: String,
}

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts { port: 3001, latency: Duration::ZERO, error_rate: 0.0, name: String::new() };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => opts.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--latency-ms" => {
                opts.latency = Duration::from_millis(value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?)
            }
            "--error-rate" => {
                opts.error_rate = value()?.parse().map_err(|e| format!("--error-rate: {e}"))?;
                if !(0.0..=1.0).contains(&opts.error_rate) {
                    return Err("--error-rate must be within 0..=1".into());
                }
            }
            "--name" => opts.name = value()?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.name.is_empty() {
        opts.name = format!("mock-{}", opts.port);
    }
    Ok(opts)
}

struct State {
    opts: Opts,
    counter: AtomicU64,
}

fn json(status: StatusCode, name: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    if let Ok(v) = header::HeaderValue::from_str(name) {
        res.headers_mut().insert("x-upstream", v);
    }
    res
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if !state.opts.latency.is_zero() {
        tokio::time::sleep(state.opts.latency).await;
    }
    let n = state.counter.fetch_add(1, Ordering::Relaxed);
    let name = &state.opts.name;
    if state.opts.error_rate > 0.0 {
        // Deterministic spread: request n fails when its scrambled value falls below the rate.
        let x = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64;
        if x < state.opts.error_rate {
            return Ok(json(StatusCode::INTERNAL_SERVER_ERROR, name, r#"{"error":"injected failure"}"#));
        }
    }
    let res = match req.uri().path() {
        "/products" => json(StatusCode::OK, name, PRODUCTS),
        "/health" => json(StatusCode::OK, name, format!(r#"{{"status":"ok","upstream":"{name}"}}"#)),
        "/echo" => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into()))
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

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) };
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], opts.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("mock upstream {} on http://{addr} (latency {:?}, error rate {})", opts.name, opts.latency, opts.error_rate);
    let state = Arc::new(State { opts, counter: AtomicU64::new(0) });
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let conn = builder.serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |req| handle(state.clone(), req)),
                ).into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    ExitCode::SUCCESS
}
