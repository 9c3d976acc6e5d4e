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
//! `--config FILE` (a JSON `ServiceConfig`), `--webhook URL` (http:// alert
//! webhook), `--admin ADDR|off` (admin HTTP server: `/metrics`, `/stats`,
//! `/healthz`; default 127.0.0.1:9381).
//!
//! Precedence, whatever the order of the flags: built-in defaults, then the
//! `--config` file, then the other flags. The admin default applies unless
//! the file has an `admin` key (an address, or `null` for off) or `--admin`
//! is given: a file without `admin` keeps the admin server on 127.0.0.1:9381.
//!
//! Telemetry: `--log-format human|json`, `--otlp-endpoint URL` (export spans:
//! one `consumer.handle` span per event, in the producing request's trace
//! through the record's `traceparent` header), `--trace-sampling RATIO`;
//! `RUST_LOG` sets the log filter. Stops on Ctrl-C, leaving the group.

use std::process::ExitCode;

#[path = "support/telemetry.rs"]
mod telemetry;

use nexus_consumer::{ConsumerService, ServiceConfig};
use nexus_telemetry::LogFormat;

const USAGE: &str =
    "usage: consumer [--config FILE] [--kafka HOST:PORT[,..]] [--redis redis://HOST:PORT] \
[--group ID] [--webhook http://HOST:PORT/PATH] [--admin ADDR|off] [--log-format human|json] \
[--otlp-endpoint URL] [--trace-sampling RATIO]

  --config FILE   JSON ServiceConfig; the other flags override it, in any order
  --kafka         default 127.0.0.1:9092 (or the file's kafka_bootstrap)
  --redis         default redis://127.0.0.1:6379 (or the file's redis_url)
  --group         default nexus-consumer-group (or the file's group_id)
  --admin ADDR    admin server (/metrics, /stats, /healthz), `off` for none;
                  default 127.0.0.1:9381, also with --config unless the file
                  has an `admin` key (`\"admin\": null` turns it off)";

/// The Nexus default consumer admin address (`docs/prometheus.yml` scrapes it).
const DEFAULT_ADMIN: ([u8; 4], u16) = ([127, 0, 0, 1], 9381);

struct Args {
    config: ServiceConfig,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    sampling: f64,
}

/// Flags that override the file (or the defaults), kept until all are read
/// so that their order does not matter.
#[derive(Default)]
struct Overrides {
    kafka: Option<String>,
    redis: Option<String>,
    group: Option<String>,
    webhook: Option<String>,
    /// `Some(None)`: `--admin off`.
    admin: Option<Option<std::net::SocketAddr>>,
}

/// The `--config` file, and whether it names `admin` (an address or `null`).
fn read_config(path: &str) -> Result<(ServiceConfig, bool), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let config = ServiceConfig::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
    // from_json accepted it, so it is a JSON object.
    let has_admin = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.as_object().map(|o| o.contains_key("admin")))
        .unwrap_or(false);
    Ok((config, has_admin))
}

fn parse_args() -> Result<Args, String> {
    let mut file = None;
    let mut o = Overrides::default();
    let mut log_format = LogFormat::Human;
    let mut otlp_endpoint = None;
    let mut sampling = 1.0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--config" if file.is_some() => return Err(format!("--config given twice\n{USAGE}")),
            "--config" => file = Some(value),
            "--kafka" => o.kafka = Some(value),
            "--redis" => o.redis = Some(value),
            "--group" => o.group = Some(value),
            "--webhook" => o.webhook = Some(value),
            "--admin" if value == "off" => o.admin = Some(None),
            "--admin" => {
                let addr = value
                    .parse()
                    .map_err(|e| format!("--admin {value:?}: {e}"))?;
                o.admin = Some(Some(addr));
            }
            "--log-format" => log_format = value.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--otlp-endpoint" => otlp_endpoint = Some(value),
            "--trace-sampling" => {
                sampling = value
                    .parse()
                    .map_err(|e| format!("{flag} {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    // Defaults, then the file, then the flags.
    let (mut config, file_has_admin) = match &file {
        Some(path) => read_config(path)?,
        None => (
            ServiceConfig::new("127.0.0.1:9092", "redis://127.0.0.1:6379"),
            false,
        ),
    };
    if !file_has_admin {
        config.admin = Some(DEFAULT_ADMIN.into());
    }
    if let Some(v) = o.kafka {
        config.kafka_bootstrap = v;
    }
    if let Some(v) = o.redis {
        config.redis_url = v;
    }
    if let Some(v) = o.group {
        config.group_id = v;
    }
    if let Some(v) = o.webhook {
        config.alerts.webhook_url = Some(v);
    }
    if let Some(v) = o.admin {
        config.admin = v;
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(Args {
        config,
        log_format,
        otlp_endpoint,
        sampling,
    })
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
