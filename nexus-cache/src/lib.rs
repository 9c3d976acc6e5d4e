//! A transparent, pipelined, multiplexing Redis proxy: the base of the Nexus
//! cache proxy.
//!
//! Any Redis client can point at it unchanged. Commands are framed with a
//! scan-only parser and forwarded as raw bytes, so binary values, nested
//! replies, RESP3 and error replies pass through byte for byte; replies to
//! pipelined commands come back in order. Stateless commands from all clients
//! are multiplexed over a small pool of pipelined upstream connections;
//! commands that carry connection state (transactions, blocking commands,
//! pub/sub, `SELECT`, RESP3, client tracking) move the client to a dedicated
//! upstream connection. See `docs/cache-proxy.md` for the full behaviour.
//!
//! The cache mechanisms are standalone modules, each usable without the
//! proxy:
//!
//! - [`singleflight`]: a cancellation-safe [`singleflight::Group`] that
//!   collapses concurrent calls for one key into one execution;
//! - [`hotkeys`]: a bounded-memory, decaying heavy-hitter detector and the TTL
//!   extension decision for hot keys;
//! - [`policy`]: the YAML policy (rules by command and key glob), compiled
//!   once into a matcher, with a file reloader;
//! - [`tags`]: tag invalidation in Redis through Lua scripts, with a small
//!   client API over the `redis` crate;
//! - [`policy::metrics`]: the counters of all of the above ([`MechanismMetrics`]).
//!
//! Given a policy ([`ProxyConfigBuilder::policy`], `policy_handle`,
//! `policy_file`), the proxy runs them live: default TTLs on `SET`,
//! singleflight reads with read-your-writes, hot-key tracking and TTL
//! extension, auto-tagged writes, the stampede guard (one client per miss
//! fills a guarded key, across proxies, through a lease in Redis; the others
//! wait, bounded; early refresh and stale-while-revalidate), and the
//! `NEXUS.POLICY`, `NEXUS.HOTKEYS`,
//! `NEXUS.TAG`, `NEXUS.INVALIDATE` commands (see `docs/cache-proxy.md`).
//!
//! Observability: [`Metrics`] and [`MechanismMetrics`] (also over RESP with
//! `NEXUS.STATS`), an optional admin HTTP server with `/metrics`
//! (Prometheus), `/stats` (JSON) and `/healthz` ([`ProxyConfig::admin`],
//! crate feature `admin`), and sampled `cache.command` spans
//! ([`ProxyConfig::trace_sample`]).
//!
//! Configuration is typed and validated once:
//!
//! ```
//! use nexus_cache::{ClientAuth, ProxyConfig};
//!
//! let config = ProxyConfig::builder()
//!     .upstream("redis://:secret@10.0.0.5:6379/2")
//!     .pool_size(4)
//!     .build()
//!     .unwrap();
//! assert_eq!(config.listen.to_string(), "127.0.0.1:6380"); // the seed's default
//! assert_eq!(config.upstream.db, 2);
//! // Clients must present the upstream password unless configured otherwise.
//! assert_eq!(config.client_auth, ClientAuth::SameAsUpstream);
//! assert_eq!(config.effective_client_auth().unwrap().password, "secret");
//!
//! let err = ProxyConfig::builder().upstream("rediss://h:1").build().unwrap_err();
//! assert!(err.to_string().contains("only redis://"));
//! ```
//!
//! Serving:
//!
//! ```no_run
//! use nexus_cache::{Proxy, ProxyConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ProxyConfig::builder()
//!     .listen("127.0.0.1:6380".parse()?)
//!     .upstream("redis://127.0.0.1:6379")
//!     .pool_size(2)
//!     .build()?;
//! let proxy = Proxy::new(config);
//! let listener = proxy.bind().await?;
//! // Runs until the shutdown future resolves (here: never).
//! proxy.serve(listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A policy and a singleflight group, on their own:
//!
//! ```
//! use nexus_cache::policy::Policy;
//! use nexus_cache::singleflight::Group;
//!
//! let policy = Policy::from_yaml_str(
//!     "rules:\n  - commands: [GET]\n    keys: 'product:*'\n    singleflight: true\n",
//! ).unwrap();
//! let rule = policy.match_command(b"get", b"product:1").unwrap();
//! assert!(rule.singleflight);
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let group: Group<Vec<u8>, Option<String>> = Group::new();
//! let out = group.run(b"product:1".to_vec(), || async { Some("v".to_owned()) }).await.unwrap();
//! assert_eq!(out.value.as_deref(), Some("v"));
//! # });
//! ```

#[cfg(feature = "admin")]
mod admin;
mod client;
mod config;
mod error;
mod live;
mod metrics;
mod near;
mod replies;
mod resp;
mod route;
mod server;
mod stampede;
mod upstream;

pub mod hotkeys;
pub mod policy;
pub mod singleflight;
pub mod tags;

pub use config::{
    COMMAND_FRAMING, ClientAuth, Credentials, DEFAULT_MAX_COMMAND_LEN, PolicySource, ProxyConfig,
    ProxyConfigBuilder, UpstreamAddr,
};
pub use error::{ConfigError, ServeError, UpstreamError};
pub use metrics::{Histogram, Metrics, MetricsSnapshot, SEED_BUCKETS_MS, SeedBuckets};
pub use policy::metrics::{MechanismMetrics, MechanismSnapshot};
pub use server::Proxy;
