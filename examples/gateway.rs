//! The Nexus API gateway.
//!
//! ```text
//! cargo run --release --example mock_upstream -- --port 3001 &
//! cargo run --release --example mock_upstream -- --port 3002 &
//! cargo run --release --example gateway -- --config config/gateway.dev.yaml
//! curl -s -X POST localhost:3000/auth/token -H 'content-type: application/json' \
//!      -d '{"client_id":"gateway-client","client_secret":"supersecret123"}'
//! ```
//!
//! Parses `--config FILE`, validates it once (the signing secret may come from the
//! environment variable the file names, `NEXUS_JWT_SECRET` by default), builds the
//! gateway and serves until SIGTERM or ctrl-c, then drains. `RUST_LOG` sets the log
//! filter (default `info`).
//!
//! Telemetry (`nexus_telemetry::init`, once): `--log-format human|json` (JSON
//! lines carry `trace_id`/`span_id` inside a traced request), `--otlp-endpoint
//! URL` exports spans over OTLP/HTTP (e.g. `http://localhost:4318`) and turns
//! the config's `tracing` section on, `--trace-sampling RATIO` (0..=1, default
//! 1.0) samples new traces.
//!
//! Live dashboard: open <http://localhost:3000/dashboard> and sign in with a
//! client id and secret (the dev config's demo client works); its cache and
//! consumer panels read the admin servers named in the config's `dashboard`
//! section.

use std::process::ExitCode;

#[path = "support/telemetry.rs"]
mod telemetry;

use nexus_gateway::{Gateway, GatewayConfig, shutdown_signal};
use nexus_telemetry::LogFormat;

const USAGE: &str = "Usage: gateway [--config FILE] [--workers N] [--log-format human|json] \
[--otlp-endpoint URL] [--trace-sampling RATIO]   (default: config/gateway.dev.yaml; \
--workers N serves from N current-thread runtimes on SO_REUSEPORT listeners, one per core is typical; \
without it one multi-thread runtime serves; --otlp-endpoint exports spans over OTLP/HTTP and \
enables the `tracing` config section)";

/// Parsed command line.
struct Args {
    path: String,
    workers: Option<std::num::NonZeroUsize>,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    sampling: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut out = Args {
        path: "config/gateway.dev.yaml".to_owned(),
        workers: None,
        log_format: LogFormat::Human,
        otlp_endpoint: None,
        sampling: 1.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--config" => out.path = v,
            "--workers" => {
                out.workers = Some(
                    v.parse()
                        .map_err(|_| format!("--workers needs a positive integer, got {v:?}"))?,
                );
            }
            "--log-format" => out.log_format = v.parse().map_err(|e| format!("{a}: {e}"))?,
            "--otlp-endpoint" => out.otlp_endpoint = Some(v),
            "--trace-sampling" => {
                out.sampling = v.parse().map_err(|e| format!("{a} {v:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let workers = args.workers;
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
        Ok(rt) => rt.block_on(run(args)),
        Err(e) => {
            eprintln!("error: runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let exporting = args.otlp_endpoint.is_some();
    let guard = match telemetry::init(
        "nexus-gateway",
        args.log_format,
        args.otlp_endpoint,
        args.sampling,
    ) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let code = serve(&args.path, args.workers, exporting).await;
    guard.shutdown().await;
    code
}

async fn serve(path: &str, workers: Option<std::num::NonZeroUsize>, exporting: bool) -> ExitCode {
    let mut settings =
        match GatewayConfig::from_file(path).and_then(|c| c.validate(|k| std::env::var(k).ok())) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    if exporting {
        settings.tracing = true;
    }
    if settings.dev_mode {
        eprintln!(
            "\n  *** DEVELOPMENT MODE: insecure secrets accepted. Do not expose this gateway. ***\n"
        );
    }
    let listen = settings.listen;
    let gateway = match Gateway::builder(settings).build() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shown = if listen.ip().is_unspecified() {
        format!("localhost:{}", listen.port())
    } else {
        listen.to_string()
    };
    eprintln!("  live dashboard: http://{shown}/dashboard   (sign in with a client id and secret)");
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
