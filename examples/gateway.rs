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
//! 1.0) samples new traces. Without an exporter, `tracing` in the config or
//! Kafka events, nothing reads OpenTelemetry span data, so the OpenTelemetry
//! layer is filtered off and request spans cost only what `RUST_LOG` asks for.
//!
//! Live dashboard: open <http://localhost:3000/dashboard> and sign in with a
//! client id and secret (the dev config's demo client works); its cache and
//! consumer panels read the admin servers named in the config's `dashboard`
//! section.

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: 1.6 µs less gateway CPU per proxied
/// request (26.9 against 28.5 µs, three alternating wrk runs; see
/// docs/benchmarks/gateway.md, session 4).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal as _;

use nexus_gateway::{Gateway, GatewayConfig, Settings, shutdown_signal};
use nexus_telemetry::{LogFormat, TelemetryConfig, TelemetryGuard};

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
    let mut settings = match GatewayConfig::from_file(&args.path)
        .and_then(|c| c.validate(|k| std::env::var(k).ok()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if exporting {
        settings.tracing = true;
    }
    let guard = match init_telemetry(&args, needs_otel(&settings)) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let code = serve(settings, args.workers).await;
    guard.shutdown().await;
    code
}

/// Whether anything reads the OpenTelemetry data of the gateway's spans: an
/// exporter or upstream `traceparent` (`tracing`), or the `traceparent`
/// header of Kafka event records. When nothing does, the OpenTelemetry layer
/// is filtered off, so each request span costs only what the log filter asks
/// for (with `RUST_LOG=warn`, nothing: a disabled span).
fn needs_otel(settings: &Settings) -> bool {
    settings.tracing || settings.kafka_bootstrap.is_some()
}

/// Logs and traces (`nexus_telemetry::init`, once): `RUST_LOG` as the log
/// filter (default `info`), colours only on a terminal, OTLP export when
/// `--otlp-endpoint` is given. On error it prints the reason and returns exit
/// code 2.
fn init_telemetry(args: &Args, otel: bool) -> Result<TelemetryGuard, ExitCode> {
    let config = TelemetryConfig::new("nexus-gateway")
        .log_format(args.log_format)
        .ansi(std::io::stderr().is_terminal())
        .filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
        .trace_filter(if otel { "info" } else { "off" })
        .otlp_endpoint(args.otlp_endpoint.clone())
        .sampling_ratio(args.sampling);
    nexus_telemetry::init(config).map_err(|e| {
        eprintln!("error: telemetry: {e}");
        ExitCode::from(2)
    })
}

async fn serve(settings: Settings, workers: Option<std::num::NonZeroUsize>) -> ExitCode {
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
