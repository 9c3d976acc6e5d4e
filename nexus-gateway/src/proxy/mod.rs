//! `/api/*`: retry -> balance -> breaker -> timeout -> pooled client.
//!
//! The `/api` prefix is stripped (`/api/products` -> upstream `/products`). Bodies
//! stream in both directions; only JSON responses on wrapped routes are buffered,
//! up to a cap. Status mapping: no available endpoint (or every circuit open) ->
//! 503, upstream call timed out -> 504, attempts exhausted -> 502. A failure
//! of the client's own request body is not the upstream's: 400 (malformed
//! framing), 408 (stalled upload), 499 logged and the connection closed
//! (client gone); none of these is retried or counted by the breakers or the
//! balancer. `proxy.timeout` also bounds a buffered response body read;
//! `proxy.body_idle_timeout` bounds the pause between two frames of either
//! streamed body (see `stream`).
//!
//! Retries re-pick a different endpoint each time and only happen for requests
//! that can be replayed: idempotent methods with an empty body.

mod breaker;
mod client;
mod connect;
mod forward;
mod lb;
mod seams;
mod stream;
pub mod transform;

pub use breaker::{MAX_BREAKERS, NexusBreakers};
pub use client::UpstreamClient;
pub use connect::{PlainConn, PlainConnector};
pub use forward::{Proxy, SMALL_BODY};
pub use lb::{LbUpstreams, parse_services};
pub use seams::{
    AttemptGuard, AttemptOutcome, BreakerPermit, Breakers, CircuitListener, CircuitOpen,
    CircuitTransition, Picked, Upstreams,
};
pub use stream::{ClientBody, UpstreamStream};

/// Request body sent upstream: the client's streamed body, or empty on a retry.
pub type UpstreamBody = http_body_util::Either<ClientBody, http_body_util::Empty<bytes::Bytes>>;
