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

mod client;
mod config;
mod error;
mod metrics;
mod resp;
mod route;
mod server;
mod upstream;

pub use config::{ClientAuth, Credentials, ProxyConfig, ProxyConfigBuilder, UpstreamAddr};
pub use error::{ConfigError, ServeError, UpstreamError};
pub use metrics::{Histogram, Metrics, MetricsSnapshot};
pub use server::Proxy;
