//! The whole Nexus system in one process: two mock upstreams, the gateway,
//! the cache proxy and the event consumer.
//!
//! ```text
//! cargo run --example full_stack                 # seed ports: 3000, 3001, 3002, 6380
//! bash scripts/full_stack.sh                     # also installs and starts Redis + a Kafka broker
//! cargo run --example full_stack -- --gateway-port 8000 --upstream-ports 8001,8002 --proxy-port 7380
//! ```
//!
//! Redis: uses `redis://127.0.0.1:6379` (or `--redis URL`) when it answers
//! `PING`; otherwise starts a `redis-server` child on that port (no
//! persistence, loopback only) and stops it on exit. Kafka: uses
//! `127.0.0.1:9092` (or `--kafka HOST:PORT`) when a broker answers
//! `ApiVersions`; otherwise the gateway's events go through an in-memory queue
//! straight to the consumer's handlers, and the start-up text says so.
//!
//! The gateway runs in development mode (built-in signing secret unless
//! `NEXUS_JWT_SECRET` is set, the seed's demo client) and listens on
//! 127.0.0.1 only. Stops on ctrl-c or SIGTERM, waiting for each component
//! with a deadline. `docs/tour.md` is a tour of what to try.

use std::process::ExitCode;

#[path = "support/mock_upstream_app.rs"]
mod mock_upstream_app;
#[path = "support/stack.rs"]
mod stack;
#[path = "support/telemetry.rs"]
mod telemetry;

use nexus_telemetry::LogFormat;
use stack::{Options, Stack};

const USAGE: &str = "\
Usage: full_stack [OPTIONS]

Options:
  --gateway-port PORT       gateway port                       [default: 3000]
  --upstream-ports P1,P2    mock upstream ports                [default: 3001,3002]
  --proxy-port PORT         cache proxy port                   [default: 6380]
  --redis URL               Redis (redis://host:port or host:port) [env: NEXUS_REDIS_ADDR] [default: redis://127.0.0.1:6379]
  --kafka HOST:PORT         Kafka bootstrap                    [env: NEXUS_KAFKA_BOOTSTRAP] [default: 127.0.0.1:9092]
  --cache-policy FILE       cache policy YAML for the proxy (docs/cache-policy.md) [default: none]
  --cache-admin ADDR|off    cache proxy admin HTTP (/metrics, /stats) [default: 127.0.0.1:9380]
  --consumer-admin ADDR|off consumer admin HTTP (/metrics, /stats, /healthz) [default: 127.0.0.1:9381]
  --otlp-endpoint URL       export spans over OTLP/HTTP, e.g. http://localhost:4318 [default: none]
  --trace-sampling RATIO    share of new traces sampled, 0..=1 [default: 1.0]
  --log-format human|json   log lines on stderr                [default: human]
  -h, --help                print this help

RUST_LOG sets the log filter (default: info).";

struct Args {
    stack: Options,
    otlp_endpoint: Option<String>,
    sampling: f64,
    log_format: LogFormat,
}

fn port(flag: &str, v: &str) -> Result<u16, String> {
    v.trim().parse().map_err(|e| format!("{flag} {v:?}: {e}"))
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut stack = Options::default();
    if let Ok(r) = std::env::var("NEXUS_REDIS_ADDR") {
        stack.redis = r;
    }
    if let Ok(k) = std::env::var("NEXUS_KAFKA_BOOTSTRAP") {
        stack.kafka = k;
    }
    let mut args = Args {
        stack,
        otlp_endpoint: None,
        sampling: 1.0,
        log_format: LogFormat::Human,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--gateway-port" => args.stack.gateway_port = port(&flag, &v)?,
            "--proxy-port" => args.stack.proxy_port = port(&flag, &v)?,
            "--upstream-ports" => {
                args.stack.upstream_ports = v
                    .split(',')
                    .map(|p| port(&flag, p))
                    .collect::<Result<_, _>>()?;
            }
            "--redis" => args.stack.redis = v,
            "--kafka" => args.stack.kafka = v,
            "--cache-policy" => args.stack.cache_policy = Some(v),
            "--cache-admin" if v == "off" => args.stack.cache_admin = None,
            "--cache-admin" => {
                args.stack.cache_admin = Some(v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))?);
            }
            "--consumer-admin" if v == "off" => args.stack.consumer_admin = None,
            "--consumer-admin" => {
                args.stack.consumer_admin =
                    Some(v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))?);
            }
            "--otlp-endpoint" => {
                args.otlp_endpoint = Some(v);
                args.stack.gateway_tracing = true;
            }
            "--trace-sampling" => {
                args.sampling = v.parse().map_err(|e| format!("{flag} {v:?}: {e}"))?;
            }
            "--log-format" => args.log_format = v.parse().map_err(|e| format!("{flag}: {e}"))?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let guard = match telemetry::init("nexus", args.log_format, args.otlp_endpoint, args.sampling) {
        Ok(g) => g,
        Err(code) => return code,
    };
    eprintln!(
        "\n  *** DEVELOPMENT MODE: the gateway signs tokens with a built-in, published secret\n  \
         *** (unless NEXUS_JWT_SECRET is set) and accepts the seed's demo client.\n  \
         *** It listens on 127.0.0.1 only. Never expose it.\n"
    );
    let stack = match Stack::start(args.stack).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            guard.shutdown().await;
            return ExitCode::FAILURE;
        }
    };
    println!("{}", stack.banner());
    nexus_gateway::shutdown_signal().await;
    tracing::info!("shutting down");
    stack.shutdown().await;
    guard.shutdown().await;
    ExitCode::SUCCESS
}
