//! The Nexus cache proxy: a transparent, pipelined Redis proxy.
//!
//! ```text
//! cargo run --release --example cache_proxy -- \
//!     --listen 127.0.0.1:6380 --upstream redis://127.0.0.1:6379
//! redis-cli -p 6380 SET greeting hello
//! ```
//!
//! Flags: `--listen ADDR` (default 127.0.0.1:6380), `--upstream URL` (default
//! redis://127.0.0.1:6379, `redis://[[user]:password@]host:port[/db]`),
//! `--pool-size N` (default 2), `--max-clients N` (default 10000),
//! `--max-bulk-len BYTES` (largest bulk string, default 512 MiB as Redis),
//! `--max-command-len BYTES` (longest client command, all arguments together;
//! default the larger of 1 GiB and `--max-bulk-len` + 4 KiB, at least that
//! sum), `--threads N`
//! (runtime worker threads; default 1, a single-threaded runtime like twemproxy's
//! event loop, which is fastest when Redis runs on the same few cores).
//! `--policy FILE` loads a cache policy (see docs/cache-policy.md) and reloads it
//! when the file changes (an invalid new version is logged and the old policy
//! stays). `--admin ADDR` serves `/metrics` (Prometheus), `/stats` (JSON)
//! and `/healthz` over HTTP on ADDR (Nexus's usual port is 9380; off unless
//! given).
//!
//! Telemetry (`nexus_telemetry::init`, once): `--log-format human|json`,
//! `--otlp-endpoint URL` exports spans over OTLP/HTTP, `--command-trace-every N`
//! gives one client command in N a `cache.command` span (default 0: none),
//! `--trace-sampling RATIO` is the exporter's ratio of those (default 1.0).
//! `RUST_LOG` sets the log filter (default `info`).
//!
//! Stops on Ctrl-C or SIGTERM after letting connected clients receive their pending replies.

use std::process::ExitCode;

#[path = "support/telemetry.rs"]
mod telemetry;

use nexus_cache::{Proxy, ProxyConfig};
use nexus_telemetry::LogFormat;

const USAGE: &str = "usage: cache_proxy [--listen ADDR] [--upstream redis://[[user]:pass@]host:port[/db]] \
[--pool-size N] [--max-clients N] [--max-bulk-len BYTES] [--max-command-len BYTES] [--threads N] [--policy FILE] [--admin ADDR] \
[--command-trace-every N] [--log-format human|json] [--otlp-endpoint URL] [--trace-sampling RATIO]";

/// What the binary needs besides the proxy's own configuration.
struct Args {
    threads: usize,
    log_format: LogFormat,
    otlp_endpoint: Option<String>,
    sampling: f64,
}

fn config_from_args() -> Result<(ProxyConfig, Args), String> {
    let mut builder = ProxyConfig::builder();
    let mut out = Args {
        threads: 1,
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
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        builder = match flag.as_str() {
            "--listen" => builder.listen(
                value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?,
            ),
            "--upstream" => builder.upstream(value),
            "--pool-size" => builder.pool_size(number()?),
            "--max-clients" => builder.max_clients(number()?),
            "--max-bulk-len" => builder.max_bulk_len(number()?),
            "--max-command-len" => builder.max_command_len(number()?),
            "--threads" => {
                out.threads = number()?;
                builder
            }
            "--policy" => builder.policy_file(nexus_cache::policy::ReloaderConfig::new(value)),
            "--admin" => builder.admin(value.parse().map_err(|e| format!("--admin {value}: {e}"))?),
            "--command-trace-every" => builder.trace_sample(
                value
                    .parse()
                    .map_err(|e| format!("--command-trace-every {value}: {e}"))?,
            ),
            "--log-format" => {
                out.log_format = value.parse().map_err(|e| format!("{flag}: {e}"))?;
                builder
            }
            "--otlp-endpoint" => {
                out.otlp_endpoint = Some(value);
                builder
            }
            "--trace-sampling" => {
                out.sampling = value
                    .parse()
                    .map_err(|e| format!("{flag} {value:?}: {e}"))?;
                builder
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        };
    }
    Ok((builder.build().map_err(|e| e.to_string())?, out))
}

fn main() -> ExitCode {
    let (config, args) = match config_from_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(async {
            // Policy reloads and upstream trouble are logged; spans exported
            // when an OTLP endpoint is given.
            let guard = match telemetry::init(
                "nexus-cache-proxy",
                args.log_format,
                args.otlp_endpoint,
                args.sampling,
            ) {
                Ok(g) => g,
                Err(code) => return code,
            };
            let code = run(config).await;
            guard.shutdown().await;
            code
        }),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ProxyConfig) -> ExitCode {
    let (listen, upstream) = (config.listen, config.upstream.host_port.clone());
    let mut proxy = Proxy::new(config);
    let listener = match proxy.bind().await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let admin = match proxy.bind_admin().await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("admin: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("nexus cache proxy listening on {listen}, upstream {upstream}");
    if let Some(admin) = admin {
        eprintln!("admin: http://{admin}/metrics  http://{admin}/stats  http://{admin}/healthz");
    }
    let shutdown = async {
        shutdown_signal().await;
        eprintln!("shutting down");
    };
    match proxy.serve(listener, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, or SIGTERM (how service managers and containers stop a process).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
