//! Test kit for Nexus: starts the real servers Nexus talks to, on free loopback
//! ports, for integration tests.
//!
//! - [`RedisServer`]: a `redis-server` child process with no persistence;
//!   [`RedisCluster`] joins several into a Redis Cluster.
//! - [`KafkaBroker`]: a Tansu child process speaking the Apache Kafka protocol,
//!   with in-memory storage; [`KafkaClient`] drives confluent-kafka (a client
//!   that is not ours) against it for interop checks.
//! - [`HttpUpstream`]: an in-process HTTP/1.1 server with scripted behaviour
//!   (fixed JSON, latency, failure rate, status codes, header echo).
//! - `otlp::Receiver` (feature `otlp`): an in-process OTLP/HTTP trace
//!   receiver that decodes what an exporter sends and keeps the spans (it
//!   has no stop and restart: it serves until dropped).
//!
//! Every server is killed and cleaned up when its handle is dropped, can be
//! stopped and restarted on the same port for fault tests, and start-up waits
//! (with a bound) until the server answers its own protocol.
//!
//! Binaries are found through an environment variable, then `PATH` and the
//! repository's `.tools/` (where `scripts/setup.sh` installs without root):
//!
//! | binary         | variable             |
//! |----------------|----------------------|
//! | `redis-server` | `NEXUS_REDIS_SERVER` |
//! | `redis-cli`    | `NEXUS_REDIS_CLI`    |
//! | `tansu`        | `NEXUS_TANSU`        |
//! | `python3` (with `confluent-kafka`) | `NEXUS_PYTHON` |
//!
//! `bash scripts/setup.sh` installs all of them on Debian.
//!
//! A missing binary is an [`Error::BinaryNotFound`] whose message is the exact
//! install command; tests fail with it, they never skip.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> nexus_testkit::Result<()> {
//! let redis = nexus_testkit::RedisServer::start().await?;
//! assert!(redis.url().starts_with("redis://127.0.0.1:"));
//! assert_eq!(redis.cli(["PING"]).await?, "PONG");
//!
//! let upstream = nexus_testkit::HttpUpstream::builder()
//!     .json(503, r#"{"error":"down"}"#)
//!     .start()
//!     .await?;
//! assert!(upstream.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(upstream.requests(), 0);
//! # Ok(()) }
//! ```
//!
//! A test that needs a Kafka broker starts one the same way with
//! [`KafkaBroker::start`] and checks interoperability with
//! [`KafkaBroker::client`].

mod binary;
pub mod browser;
mod client;
mod error;
mod kafka;
mod kafka_client;
mod kafka_probe;
#[cfg(feature = "otlp")]
pub mod otlp;
mod process;
pub mod promtool;
mod redis;
mod serve;
mod upstream;

pub use error::{Error, Result};
pub use kafka::{KafkaBroker, KafkaBrokerBuilder, MEMORY_STORAGE};
pub use kafka_client::{Consumed, Delivered, KafkaClient, MessageWithHeaders};
pub use process::free_port;
pub use redis::{RedisCluster, RedisClusterBuilder, RedisServer, RedisServerBuilder};
pub use upstream::{
    ECHO_PATH, HttpUpstream, HttpUpstreamBuilder, MAX_BODY_BYTES, MAX_CONNECTIONS,
    REQUEST_LOG_CAPACITY, RecordedRequest, UPSTREAM_HEADER,
};
