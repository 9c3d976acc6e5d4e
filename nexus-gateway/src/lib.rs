//! The Nexus HTTP API gateway: auth, limits, balancing, breakers, retries,
//! transforms, discovery and admin endpoints, composed as tower layers.
//!
//! Lifecycle, outermost first: trace span + request id + path normalisation ->
//! blocklist (403) -> rate limit (429) -> JWT (401, public routes skipped) ->
//! router: `POST /auth/token`, `GET /health`, `/metrics`, `/telemetry`,
//! `/lb-stats`, `/cb-stats`, the live [`admin`] page `/dashboard` with its
//! admin JSON (`/admin/overview`, `/admin/dashboard[/cache|/consumer]`),
//! and `/api/*` proxied to the upstreams of
//! `services.json` (prefix stripped) through retry -> balance -> breaker ->
//! timeout -> pooled HTTP client.
//!
//! Pieces: [`GatewayConfig`] (YAML, unknown keys rejected) validated once into
//! [`Settings`]; [`Gateway::builder`] with an [`events::EventSink`] (log sink by
//! default; `nexus_events::Emitter` implements it) and a [`blocklist::Blocklist`]
//! (or [`RedisBlocklist`] from `blocklist.redis_url`); [`Gateway::serve`] with a
//! graceful drain. Balancing and discovery come from `nexus-lb`, breakers from
//! `nexus-breaker`, the limiter from `nexus-ratelimit`, all behind the object-safe
//! seams in [`proxy`] ([`proxy::Upstreams`], [`proxy::Breakers`]). See
//! `docs/gateway.md` for the behaviour in detail.
//!
//! Distributed tracing is opt-in (`tracing: { enabled: true }`): a
//! `nexus_telemetry` `SERVER` span per request outside everything else (route
//! template as `http.route`, parented on an incoming W3C `traceparent`) and a
//! `CLIENT` span per upstream attempt whose `traceparent` is sent upstream.
//! Off (the default), the stack is exactly the one above.
//!
//! ```
//! use nexus_gateway::{Gateway, GatewayConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let services = dir.path().join("services.json");
//! std::fs::write(&services, r#"{"services":[{"url":"http://127.0.0.1:3001","weight":1}]}"#)?;
//! let yaml = format!(
//!     "listen: 127.0.0.1:0\nproxy:\n  services_file: {}\nauth:\n  signing_secret: {}\n  clients: []\n",
//!     services.display(),
//!     "0123456789abcdef0123456789abcdef",
//! );
//! let settings = GatewayConfig::from_yaml(&yaml)?.validate(|_| None)?;
//! let gateway = Gateway::builder(settings).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! // Serve until the shutdown future completes (here: at once).
//! gateway.serve(listener, async {}).await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod auth;
pub mod blocklist;
mod blocklist_redis;
pub mod body;
pub mod config;
pub mod events;
mod gateway;
pub mod layers;
pub mod metrics;
pub mod path;
pub mod proxy;
mod ratelimit;
pub mod response;
mod router;
pub mod telemetry;
mod util;

pub use blocklist_redis::{BLOCKLIST_CHANNEL, BLOCKLIST_INDEX_KEY, MAX_BLOCKED, RedisBlocklist};
pub use config::{ConfigError, GatewayConfig, Settings};
pub use gateway::{
    Gateway, GatewayBuilder, GatewayError, GatewayService, HEADER_READ_TIMEOUT, MAX_CONNECTIONS,
    MAX_HEADER_BUF, ReusePortListeners, shutdown_signal,
};
pub use router::Router;
