//! The Nexus API gateway.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --port 3001 &
//! cargo run --release --example mock_upstream -- --port 3002 &
//! cargo run --release --features gateway --example gateway -- --config config/gateway.dev.yaml
//! curl -s -X POST localhost:3000/auth/token -H 'content-type: application/json' \
//!      -d '{"client_id":"gateway-client","client_secret":"supersecret123"}'
//! ```
//!
//! Parses `--config FILE`, validates it once (the signing secret may come from the
//! environment variable the file names, `NEXUS_JWT_SECRET` by default), builds the
//! gateway and serves until SIGTERM or ctrl-c, then drains. `RUST_LOG` sets the log
//! filter (default `info`).

use std::process::ExitCode;

use nexus_gateway::{Gateway, GatewayConfig, shutdown_signal};

const USAGE: &str = "Usage: gateway [--config FILE]   (default: config/gateway.dev.yaml)";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut path = "config/gateway.dev.yaml".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--config", Some(p)) => path = p,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let settings = match GatewayConfig::from_file(&path).and_then(|c| c.validate(|k| std::env::var(k).ok())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if settings.dev_mode {
        eprintln!("\n  *** DEVELOPMENT MODE: insecure secrets accepted. Do not expose this gateway. ***\n");
    }
    let gateway = match Gateway::builder(settings).build() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = gateway.run(shutdown_signal()).await {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
