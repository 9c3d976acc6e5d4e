//! The Nexus event consumer: auto-blocks abusive IPs (in Redis), alerts on
//! opened circuits, flags latency spikes.
//!
//! ```text
//! cargo run --release --features consumer --example consumer -- \
//!     --kafka 127.0.0.1:9092 --redis redis://127.0.0.1:6379 --admin 127.0.0.1:9381
//! ```
//!
//! Flags: `--kafka HOST:PORT[,HOST:PORT]` (default 127.0.0.1:9092), `--redis URL`
//! (default redis://127.0.0.1:6379), `--group ID` (default nexus-consumer-group),
//! `--config FILE` (a JSON `ServiceConfig`; flags given after it override it),
//! `--webhook URL` (http:// alert webhook), `--admin ADDR` (admin HTTP server:
//! `/metrics`, `/stats`, `/healthz`; `off` turns it off; default 127.0.0.1:9381;
//! a `--config` file replaces it with the file's `admin`).
//! Telemetry: `--log-format human|json`, `--otlp-endpoint URL` (export spans:
//! one `consumer.handle` span per event, in the producing request's trace
//! through the record's `traceparent` header), `--trace-sampling RATIO`;
//! `RUST_LOG` sets the log filter. Stops on Ctrl-C, leaving the group.

use std::process::ExitCode;

#[path = "support/telemetry.rs"]
mod telemetry;

use nexus_consumer::{ConsumerService, ServiceConfig};
use nexus_telemetry::LogFormat;

const USAGE: &str = "usage: consumer [--config FILE] [--kafka HOST:PORT[,..]] [--redis redis://HOST:PORT] \
[--group ID] [--webhook http://HOST:PORT/PATH] [--admin ADDR|off] [--log-format human|json] \
[--otlp-endpoint URL] [--trace-sampling RATIO]";

/// The Nexus default consumer admin address (`docs/prometheus.yml` scrapes it).
const DEFAULT_ADMIN: ([u8; 4], u16) = ([127, 0, 0, 1], 9381);

struct Args {
    config: ServiceConfig,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    sampling: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut config = ServiceConfig::new("127.0.0.1:9092", "redis://127.0.0.1:6379");
    config.admin = Some(DEFAULT_ADMIN.into());
    let mut out = Args {
        config,
        log_format: LogFormat::Human,
        otlp_endpoint: None,
        sampling: 1.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let config = &mut out.config;
        match flag.as_str() {
            "--config" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                *config = ServiceConfig::from_json(&text).map_err(|e| format!("{value}: {e}"))?;
            }
            "--kafka" => config.kafka_bootstrap = value,
            "--redis" => config.redis_url = value,
            "--group" => config.group_id = value,
            "--webhook" => config.alerts.webhook_url = Some(value),
            "--admin" if value == "off" => config.admin = None,
            "--admin" => {
                config.admin = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--admin {value:?}: {e}"))?,
                );
            }
            "--log-format" => out.log_format = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--otlp-endpoint" => out.otlp_endpoint = Some(value),
            "--trace-sampling" => {
                out.sampling = value
                    .parse()
                    .map_err(|e| format!("{flag} {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    out.config.validate().map_err(|e| e.to_string())?;
    Ok(out)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let guard = match telemetry::init(
        "nexus-consumer",
        args.log_format,
        args.otlp_endpoint,
        args.sampling,
    ) {
        Ok(g) => g,
        Err(code) => return code,
    };
    let config = args.config;
    tracing::info!(kafka = %config.kafka_bootstrap, redis = %config.redis_url, group = %config.group_id, admin = ?config.admin, "starting consumer");
    let service = match ConsumerService::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            guard.shutdown().await;
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    let code = match service.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    };
    guard.shutdown().await;
    code
}
