//! The Nexus event consumer: closes the loop the gateway's events open.
//!
//! It joins the Kafka consumer group `nexus-consumer-group` (configurable),
//! reads the three gateway topics and routes each to a handler:
//!
//! * `gateway.rate_limit.hit`: hits are counted per IP over a sliding window;
//!   at the threshold (seed: 5) the IP is blocked **in Redis** with an expiry,
//!   so the block survives a consumer restart and every gateway enforces it.
//!   The Redis layout (keys, index, channel) is documented in [`blocklist`].
//! * `gateway.circuit.opened`: a structured `warn` log, a counter, and an
//!   optional JSON webhook.
//! * `gateway.request.completed`: latency-spike detection, the seed's rule
//!   (3x the mean of the last 50) or an EWMA-plus-percentile rule
//!   ([`LatencyConfig`]).
//!
//! Offsets are committed after handling (at-least-once); a Redis outage
//! rewinds to the first unhandled record and retries.
//!
//! Observability: each event is handled inside a `consumer.handle` span
//! (kind `consumer`) parented on the producing request's span through the
//! record's W3C `traceparent` header; [`Stats`] counts what happened, and the
//! optional admin server ([`ServiceConfig::admin`]) serves `/metrics`
//! (Prometheus), `/stats` (JSON [`StatsSnapshot`]) and `/healthz`.
//!
//! # Features
//!
//! * `admin` (off by default): the admin server (`admin` module) and the
//!   Prometheus exposition (`metrics` module), with `nexus-admin` (hyper) and
//!   prometheus-client. Without it, a configured [`ServiceConfig::admin`]
//!   is refused by [`ServiceConfig::validate`] (so by
//!   [`ConsumerService::new`]): no port is ever bound silently, and no
//!   address is silently ignored.
//!
//! ```
//! use nexus_consumer::{ConsumerService, ServiceConfig};
//! let mut config = ServiceConfig::new("127.0.0.1:9092", "redis://127.0.0.1:6379");
//! config.block.threshold = 5;
//! let service = ConsumerService::new(config).unwrap();
//! let stats = service.stats();
//! // tokio::spawn(service.run(shutdown_signal));
//! assert_eq!(nexus_consumer::Stats::get(&stats.ips_blocked), 0);
//! assert_eq!(nexus_consumer::blocklist::blocked_key("10.0.0.7"), "nexus:blocked:10.0.0.7");
//! ```

#[cfg(feature = "admin")]
pub mod admin;
pub mod blocklist;
mod config;
pub mod handlers;
#[cfg(feature = "admin")]
pub mod metrics;
mod service;
mod stats;
pub mod webhook;

pub use config::{AlertConfig, BlockConfig, ConfigError, LatencyConfig, ServiceConfig};
pub use service::{ConsumerService, ServiceError};
pub use stats::{
    BlockedIp, MAX_REMEMBERED_BLOCKS, RATE_WINDOW_SECS, SNAPSHOT_BLOCKED_IPS, Stats, StatsSnapshot,
};
