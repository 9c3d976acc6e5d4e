//! Telemetry set-up shared by the examples. A binary reads its environment
//! once (`RUST_LOG`, whether stderr is a terminal) and hands the result to
//! `nexus_telemetry::init`; the library itself reads no environment variables.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use nexus_telemetry::{LogFormat, TelemetryConfig, TelemetryGuard};

/// Starts logs and traces for `service`: `RUST_LOG` as the filter (default
/// `info`), colours only on a terminal, OTLP export when `otlp_endpoint` is
/// given. On error it prints the reason and returns exit code 2.
pub(crate) fn init(
    service: &'static str,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    sampling: f64,
) -> Result<TelemetryGuard, ExitCode> {
    let config = TelemetryConfig::new(service)
        .log_format(log_format)
        .ansi(std::io::stderr().is_terminal())
        .filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
        .otlp_endpoint(otlp_endpoint)
        .sampling_ratio(sampling);
    nexus_telemetry::init(config).map_err(|e| {
        eprintln!("error: telemetry: {e}");
        ExitCode::from(2)
    })
}
