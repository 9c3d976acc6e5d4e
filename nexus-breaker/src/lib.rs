//! Per-endpoint circuit breaker as a tower layer, and as a plain handle.
//!
//! A [`Breaker`] watches the outcomes of calls to one endpoint over a rolling
//! window of time buckets. When more than `error_threshold_percent` of the
//! calls in the window failed and at least `volume_threshold` calls were
//! seen, it **opens**: calls fail fast with [`Error::Open`] and never reach
//! the endpoint. After `reset_timeout` it goes **half-open** and admits
//! `half_open_probes` calls; `successes_to_close` successful probes **close**
//! it, a failed probe opens it again. What counts as a failure is a
//! [`Classify`] ([`DefaultClassifier`]: errors, timeouts and `5xx`).
//!
//! - [`BreakerLayer`] / [`CircuitBreaker`]: the tower middleware, with an
//!   optional per-call timeout ([`Error::Timeout`], counted as a failure).
//! - [`Breaker::acquire`] → [`Permit`] → [`Permit::record`]: the same without
//!   tower (e.g. for a balancer's passive health: [`Breaker::is_available`]).
//! - [`Listener`]: hears every [`Transition`] (events, the
//!   `nexus_circuit_breaker_state` gauge via [`State::as_gauge`]).
//! - [`Breaker::snapshot`] / [`BreakerRegistry::snapshots`]: `/cb-stats`.
//!
//! On the data path a closed breaker costs one atomic load; outcomes are
//! recorded under a short lock that is never held across an await. Time is
//! tokio time, so tests run on a paused clock.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! use axum::{Router, body::Body, error_handling::HandleErrorLayer, routing::get};
//! use http::{Request, StatusCode};
//! use nexus_breaker::{Breaker, BreakerConfig, BreakerLayer, Error};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let seen = Arc::clone(&calls);
//! let breaker = Breaker::new("inventory", BreakerConfig::default()).unwrap();
//!
//! let app = Router::new()
//!     .route("/", get(move || {
//!         seen.fetch_add(1, Ordering::SeqCst);
//!         async { StatusCode::INTERNAL_SERVER_ERROR }
//!     }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(HandleErrorLayer::new(|e: Error| async move {
//!                 (StatusCode::SERVICE_UNAVAILABLE, e.to_string())
//!             }))
//!             .layer(BreakerLayer::new(breaker.clone())),
//!     );
//!
//! let get = || Request::get("/").body(Body::empty()).unwrap();
//! for _ in 0..3 {
//!     let res = app.clone().oneshot(get()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
//! }
//! // 3 of 3 failed (> 50%, volume 3): the circuit is open and fails fast.
//! let res = app.clone().oneshot(get()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! assert_eq!(breaker.snapshot().state, nexus_breaker::State::Open);
//! # }
//! ```

mod breaker;
mod classify;
mod config;
mod error;
mod layer;
mod registry;
mod service;
mod state;
mod window;

pub use breaker::{Breaker, Outcome, Permit, Snapshot};
pub use classify::{Classify, DefaultClassifier};
pub use config::{BreakerConfig, BreakerSettings};
pub use error::{BoxError, ConfigError, Error, RegistryFull};
pub use layer::BreakerLayer;
pub use registry::BreakerRegistry;
pub use service::{CircuitBreaker, ResponseFuture};
pub use state::{Listener, State, Transition};
pub use window::WindowCounts;
