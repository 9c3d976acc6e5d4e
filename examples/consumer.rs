//! The Nexus event consumer: auto-blocks abusive IPs (in Redis), alerts on
//! opened circuits, flags latency spikes.
//!
//! ```text
//! cargo run --release --example consumer -- \
//!     --kafka 127.0.0.1:9092 --redis redis://127.0.0.1:6379
//! ```
//!
//! Flags: `--kafka HOST:PORT[,HOST:PORT]` (default 127.0.0.1:9092), `--redis URL`
//! (default redis://127.0.0.1:6379), `--group ID` (default nexus-consumer-group),
//! `--config FILE` (a JSON `ServiceConfig`; flags given after it override it),
//! `--webhook URL` (http:// alert webhook). Stops on Ctrl-C, leaving the group.

use std::process::ExitCode;

use nexus_consumer::{ConsumerService, ServiceConfig};

const USAGE: &str = "usage: consumer [--config FILE] [--kafka HOST:PORT[,..]] [--redis redis://HOST:PORT] \
[--group ID] [--webhook http://HOST:PORT/PATH]";

fn config_from_args() -> Result<ServiceConfig, String> {
    let mut config = ServiceConfig::new("127.0.0.1:9092", "redis://127.0.0.1:6379");
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--config" => {
                let text = std::fs::read_to_string(&value).map_err(|e| format!("{value}: {e}"))?;
                config = ServiceConfig::from_json(&text).map_err(|e| format!("{value}: {e}"))?;
            }
            "--kafka" => config.kafka_bootstrap = value,
            "--redis" => config.redis_url = value,
            "--group" => config.group_id = value,
            "--webhook" => config.alerts.webhook_url = Some(value),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match config_from_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tracing::info!(kafka = %config.kafka_bootstrap, redis = %config.redis_url, group = %config.group_id, "starting consumer");
    let service = match ConsumerService::new(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    match service.run(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
