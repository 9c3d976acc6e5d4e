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
//! `--pool-size N` (default 2), `--max-clients N` (default 10000), `--threads N`
//! (runtime worker threads; default 1, a single-threaded runtime like twemproxy's
//! event loop, which is fastest when Redis runs on the same few cores).
//! `--policy FILE` loads a cache policy (see docs/cache-policy.md) and reloads it
//! when the file changes (an invalid new version is logged and the old policy
//! stays); `--admin ADDR` is accepted for forward compatibility but not
//! implemented yet (it only prints a warning).
//! Stops on Ctrl-C or SIGTERM after letting connected clients receive their pending replies.

use std::process::ExitCode;

use nexus_cache::{Proxy, ProxyConfig};

const USAGE: &str = "usage: cache_proxy [--listen ADDR] [--upstream redis://[[user]:pass@]host:port[/db]] \
[--pool-size N] [--max-clients N] [--threads N] [--policy FILE] [--admin ADDR]";

fn config_from_args() -> Result<(ProxyConfig, usize), String> {
    let mut builder = ProxyConfig::builder();
    let mut threads = 1;
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
            "--threads" => {
                threads = number()?;
                builder
            }
            "--policy" => builder.policy_file(nexus_cache::policy::ReloaderConfig::new(value)),
            "--admin" => {
                eprintln!(
                    "warning: {flag} is not implemented yet (nexus-cache part 2); ignoring {value}"
                );
                builder
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        };
    }
    Ok((builder.build().map_err(|e| e.to_string())?, threads))
}

fn main() -> ExitCode {
    // Policy reloads and upstream trouble are logged (RUST_LOG overrides `info`).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let (config, threads) = match config_from_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(rt) => rt.block_on(run(config)),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ProxyConfig) -> ExitCode {
    let (listen, upstream) = (config.listen, config.upstream.host_port.clone());
    let proxy = Proxy::new(config);
    let listener = match proxy.bind().await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("nexus cache proxy listening on {listen}, upstream {upstream}");
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
