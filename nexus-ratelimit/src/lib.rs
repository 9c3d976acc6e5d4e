//! Keyed token-bucket rate limiting as a tower layer, with bounded memory.
//!
//! Drop [`RateLimitLayer`] into any axum `Router` or tower/hyper stack. Each
//! request is charged to the bucket of a key chosen by a [`KeyExtractor`]
//! (the client IP with [`PeerIp`], honouring a fixed number of trusted proxies
//! in `X-Forwarded-For`; a header with [`FromHeader`]; or a value an earlier
//! layer stored in the extensions, like a JWT subject, with [`FromExtension`]).
//! A request over quota is answered `429 Too Many Requests` with
//! `Retry-After`, the IETF draft `RateLimit-Policy` / `RateLimit` headers and a
//! JSON body, without reaching the inner service; admitted responses carry the
//! quota headers too. An [`OnReject`] hook sees every rejection (for metrics
//! and events).
//!
//! The limiter ([`KeyedLimiter`]) is GCRA, the token bucket kept as one
//! timestamp per key in an `AtomicU64` in a sharded hash table: a check is one
//! hash, a shared lock of one shard and one compare-and-swap. Memory is
//! bounded by `max_keys` whatever the number of distinct keys (see
//! [`KeyedLimiter`] for the bound and the behaviour at it). Time comes from a
//! [`Clock`] ([`TokioClock`] by default, so tests run on tokio's paused clock;
//! on a hot production path prefer `KeyedLimiter::with_clock(config,
//! QuantaClock::new())`, whose clock read is several times cheaper).
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use http::{Request, StatusCode};
//! use nexus_ratelimit::{KeyedLimiter, LimiterConfig, PeerIp, RateLimitLayer};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The seed's policy: 10 tokens per client IP, refilled at 2 per second.
//! let limiter = KeyedLimiter::new(LimiterConfig::default());
//! let _housekeeper = limiter.spawn_housekeeper(Duration::from_secs(30));
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(RateLimitLayer::new(limiter, PeerIp::new()));
//! // In a server: axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//!
//! let peer: SocketAddr = "203.0.113.7:50000".parse().unwrap();
//! let request = || {
//!     Request::get("/")
//!         .extension(ConnectInfo(peer))
//!         .body(Body::empty())
//!         .unwrap()
//! };
//! for _ in 0..10 {
//!     let res = app.clone().oneshot(request()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::OK);
//! }
//! let res = app.clone().oneshot(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1");
//! assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=10;w=5"#);
//! assert_eq!(res.headers()["ratelimit"], r#""default";r=0;t=5"#);
//! # }
//! ```
//!
//! Feature `axum` (default) reads axum's `ConnectInfo<SocketAddr>`; without it
//! [`PeerIp`] reads a bare `SocketAddr` extension. Feature `redis` adds
//! `RedisLimiter` and `GlobalRateLimitLayer`: the same policy enforced across
//! many processes through one atomic Lua script in Redis, with a stated
//! fallback (`Fallback::Local` per-process limit by default, or fail open /
//! fail closed) while Redis is unreachable.

mod clock;
mod config;
mod error;
mod gcra;
#[cfg(feature = "redis")]
mod global;
#[cfg(feature = "redis")]
mod global_layer;
mod headers;
mod hook;
mod key;
mod keyed;
mod layer;
mod quota;
mod service;

pub use clock::{Clock, ManualClock, QuantaClock, StdClock, TokioClock};
pub use config::{DEFAULT_MAX_KEYS, DEFAULT_SHARDS, LimiterConfig, LimiterSettings};
pub use error::ConfigError;
pub use gcra::{Allowed, Decision, NotAllowed};
#[cfg(feature = "redis")]
pub use global::{Fallback, RedisConfigError, RedisKey, RedisLimiter, RedisLimiterConfig, Source};
#[cfg(feature = "redis")]
pub use global_layer::{GlobalRateLimit, GlobalRateLimitLayer, GlobalResponseFuture};
pub use headers::{RATELIMIT, RATELIMIT_POLICY};
pub use hook::{OnReject, Rejection};
pub use key::{FromExtension, FromHeader, HeaderKey, KeyExtractor, LimitKey, PeerIp};
pub use keyed::{Housekeeper, KeyedLimiter};
pub use layer::{MissingKey, RateLimitLayer, RateLimitLayerBuilder};
pub use quota::Quota;
pub use service::{RateLimit, ResponseFuture};
