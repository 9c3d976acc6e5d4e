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
//! HTTP/1.1 and HTTP/2 (prior knowledge). The service itself lives in
//! `examples/support/mock_upstream_app.rs`, shared with `full_stack`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

#[path = "support/mock_upstream_app.rs"]
mod mock_upstream_app;

use mock_upstream_app::MockOptions;

const USAGE: &str = "\
Usage: mock_upstream [--port PORT] [--latency-ms MS] [--error-rate RATE] [--name NAME]

  --port PORT        port on 127.0.0.1            [default: 3001]
  --latency-ms MS    added delay per request      [default: 0]
  --error-rate RATE  share of 500 answers, 0..=1  [default: 0]
  --name NAME        reported in bodies and the x-upstream header [default: mock-PORT]";

fn parse_args() -> Result<(u16, MockOptions), String> {
    let mut port = 3001;
    let mut opts = MockOptions {
        name: String::new(),
        latency: Duration::ZERO,
        error_rate: 0.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--latency-ms" => {
                opts.latency = Duration::from_millis(
                    value()?.parse().map_err(|e| format!("--latency-ms: {e}"))?,
                )
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
        opts.name = format!("mock-{port}");
    }
    Ok((port, opts))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (port, opts) = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "mock upstream {} on http://{addr} (latency {:?}, error rate {})",
        opts.name, opts.latency, opts.error_rate
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    mock_upstream_app::serve(listener, opts, shutdown).await;
    ExitCode::SUCCESS
}
