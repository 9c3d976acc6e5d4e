//! Client-side load balancing for tower HTTP stacks: four strategies, live
//! discovery (a watched `services.json`), passive and active health, and a
//! retry policy that re-picks an endpoint on each attempt under a budget.
//!
//! # Pieces
//!
//! - [`Balancer`]: the endpoint set and the pick. Round robin, least
//!   outstanding requests, nginx's smooth weighted round robin and
//!   power-of-two-choices over peak-EWMA latency ([`Strategy`]). Picks read
//!   an immutable snapshot through an atomic pointer (`arc-swap`) and touch
//!   only atomics: no lock, no allocation, tens of nanoseconds (see
//!   `docs/benchmarks/lb.md`).
//! - [`Lb`] / [`LbLayer`]: a tower middleware over an HTTP client that sends
//!   each request to a picked endpoint (URI scheme and authority rewritten)
//!   and counts it in flight until its response body ends.
//! - [`retry::RetryPolicy`]: a `tower::retry::Policy` for the layer above
//!   `Lb`: idempotent (or [`retry::Retryable`]) requests with replayable
//!   bodies, on transport failures, timeouts, open circuits and chosen
//!   statuses; jittered exponential backoff; a `TpsBudget`; the failed
//!   endpoint is excluded from the next pick.
//! - [`discover`]: endpoint sets as a stream; [`discover::watch_services_file`]
//!   follows the seed's `services.json`, ignoring invalid versions.
//! - [`health`]: periodic `GET /health` with thresholds; circuit-breaker
//!   state via [`Balancer::set_circuit_state`].
//! - [`LbStats`]: the `/lb-stats` snapshot (serde `Serialize`).
//!
//! # Why not `tower::balance::p2c`
//!
//! `tower::balance::p2c::Balance` owns one service per endpoint and picks
//! inside `poll_ready` among *ready* services. A gateway needs the pick to be
//! an explicit, cheap call it can repeat per retry attempt while avoiding the
//! endpoint that just failed, weights, strategies other than P2C, and a
//! stats snapshot — none of which `Balance` exposes. `tower::load::PeakEwma`
//! keeps its estimate behind a `Mutex` per endpoint; [`Balancer`] uses the
//! same estimator (peak, exponential decay toward newer samples and toward
//! zero while idle, cost = estimate × (in-flight + 1)) packed into one atomic
//! word. `tower::retry` and its `TpsBudget` are used as they are.
//!
//! # Example: an axum app proxying `/api/*` across two upstreams
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Json, Router, body::Body, extract::Request, routing::get};
//! use bytes::Bytes;
//! use http::StatusCode;
//! use http_body_util::{BodyExt, Full, Limited};
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use nexus_lb::retry::{RetryConfig, RetryPolicy};
//! use nexus_lb::{Balancer, EndpointSpec, LbError, LbLayer, Strategy};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn upstream(name: &'static str) -> anyhow::Result<String> {
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! #     let url = format!("http://{}", listener.local_addr()?);
//! #     let app = Router::new().route("/api/who", get(move || async move { name }));
//! #     tokio::spawn(async move { axum::serve(listener, app).await });
//! #     Ok(url)
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! // Two upstreams on free loopback ports (plain axum servers here).
//! let (a, b) = (upstream("a").await?, upstream("b").await?);
//!
//! // The balancer; in a gateway, `spawn_discovery(watch_services_file(..))`
//! // keeps this set in sync with services.json.
//! let balancer = Balancer::builder().strategy(Strategy::WeightedRoundRobin).build()?;
//! balancer.set_endpoints(&[EndpointSpec::new(&a, 2)?, EndpointSpec::new(&b, 1)?])?;
//!
//! // retry(budget) -> balance -> timeout -> HTTP client.
//! let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let upstreams = ServiceBuilder::new()
//!     .layer(RetryPolicy::new(RetryConfig::default())?.layer())
//!     .layer(LbLayer::new(balancer.clone()))
//!     .timeout(Duration::from_secs(5))
//!     .service(client);
//!
//! let stats = balancer.clone();
//! let app = Router::new()
//!     .route("/lb-stats", get(move || async move { Json(stats.stats()) }))
//!     .fallback(move |req: Request| {
//!         let upstreams = upstreams.clone();
//!         async move {
//!             // Buffer the body (bounded) so that the request can be replayed.
//!             let (parts, body) = req.into_parts();
//!             let Ok(body) = Limited::new(body, 64 * 1024).collect().await else {
//!                 return StatusCode::PAYLOAD_TOO_LARGE.into_response();
//!             };
//!             let req = http::Request::from_parts(parts, Full::new(body.to_bytes()));
//!             match upstreams.oneshot(req).await {
//!                 Ok(resp) => resp.map(Body::new).into_response(),
//!                 Err(e) if matches!(e.downcast_ref(), Some(LbError::NoAvailableEndpoint)) => {
//!                     StatusCode::SERVICE_UNAVAILABLE.into_response()
//!                 }
//!                 Err(_) => StatusCode::BAD_GATEWAY.into_response(),
//!             }
//!         }
//!     });
//! # use axum::response::IntoResponse;
//!
//! // Six requests: weights 2:1 give a, b, a, a, b, a (smooth, no bursts).
//! let mut seen = String::new();
//! for _ in 0..6 {
//!     let resp = app.clone().oneshot(Request::get("/api/who").body(Body::empty())?).await?;
//!     assert_eq!(resp.status(), StatusCode::OK);
//!     seen.push_str(std::str::from_utf8(&resp.into_body().collect().await?.to_bytes())?);
//! }
//! assert_eq!(seen, "abaaba");
//! let handled: u64 = balancer.stats().endpoints.iter().map(|e| e.handled).sum();
//! assert_eq!(handled, 6);
//! # Ok(())
//! # }
//! ```

mod balancer;
pub mod discover;
mod endpoint;
mod error;
mod ewma;
mod exclude;
pub mod health;
pub mod retry;
mod rng;
mod service;
mod snapshot;
mod stats;
mod strategy;
mod task;
mod wrr;

pub use balancer::{Balancer, BalancerBuilder, CircuitState, MAX_ENDPOINTS, SetChange};
pub use endpoint::{EndpointHandle, EndpointSpec, InFlight, MAX_WEIGHT};
pub use error::{BoxError, ConfigError, LbError};
pub use exclude::{EXCLUDE_CAPACITY, Exclude};
pub use service::{Lb, LbLayer, ResponseFuture, ServedBy, TrackedBody};
pub use stats::{EndpointStats, LbStats};
pub use strategy::{Strategy, UnknownStrategy};
pub use task::TaskHandle;
pub use wrr::TABLE_BUILD_LIMIT;
