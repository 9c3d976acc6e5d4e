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

const USAGE: &str = "Usage: gateway [--config FILE] [--workers N]   (default: config/gateway.dev.yaml; \
--workers N serves from N current-thread runtimes on SO_REUSEPORT listeners, one per core is typical; \
without it one multi-thread runtime serves)";

fn main() -> ExitCode {
    let mut path = "config/gateway.dev.yaml".to_owned();
    let mut workers = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--config", Some(p)) => path = p,
            ("--workers", Some(n)) => match n.parse::<std::num::NonZeroUsize>() {
                Ok(n) => workers = Some(n),
                Err(_) => {
                    eprintln!("error: --workers needs a positive integer, got {n:?}\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    // With --workers the main runtime only runs background tasks (discovery,
    // limiter housekeeping, events): one thread is plenty.
    let rt = match workers {
        Some(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    match rt {
        Ok(rt) => rt.block_on(run(path, workers)),
        Err(e) => {
            eprintln!("error: runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(path: String, workers: Option<std::num::NonZeroUsize>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let settings =
        match GatewayConfig::from_file(&path).and_then(|c| c.validate(|k| std::env::var(k).ok())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    if settings.dev_mode {
        eprintln!(
            "\n  *** DEVELOPMENT MODE: insecure secrets accepted. Do not expose this gateway. ***\n"
        );
    }
    let gateway = match Gateway::builder(settings).build() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = match workers {
        Some(n) => gateway.run_per_core(n, shutdown_signal()).await,
        None => gateway.run(shutdown_signal()).await,
    };
    if let Err(e) = served {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
