//! Retrying failed requests on another endpoint: a [`tower::retry::Policy`]
//! with a budget, backoff with jitter, and a per-attempt re-pick.
//!
//! # How a retry reaches another endpoint
//!
//! Stack the retry layer above [`Lb`](crate::Lb): every attempt is a fresh
//! call of `Lb`, so the balancer picks again. After a failed attempt the
//! policy adds the failed endpoint (named by [`LbError::Upstream`] or the
//! response's [`ServedBy`](crate::ServedBy)) to the [`Exclude`](crate::Exclude)
//! set in the request's extensions, and `Lb` avoids it when another endpoint
//! is available.
//!
//! # What is retried
//!
//! Only requests that are safe to send twice: idempotent methods (`GET`,
//! `HEAD`, `OPTIONS`, `PUT`, `DELETE`, `TRACE`) or requests carrying the
//! [`Retryable`] extension, *and* whose body can be replayed ([`ReplayBody`]:
//! empty or fully buffered bodies; a streaming body is never retried — the
//! gateway buffers small bodies into `Full<Bytes>` before this layer). They
//! are retried on connection failures, timeouts, open circuits, other
//! transport errors, and the configured statuses (default 502, 503, 504), up
//! to `max_attempts` attempts in total, and only while the
//! [`TpsBudget`](tower::retry::budget::TpsBudget) allows: retries are capped
//! at a fraction of recent requests (plus a small floor), so an outage does
//! not multiply the load on the endpoints that are left.
//!
//! Put a per-attempt timeout *below* `Lb` (`Lb<Timeout<Client>>`) so that a
//! timeout is attributed to its endpoint (excluded, recorded in its latency).
//!
//! [`LbError::Upstream`]: crate::LbError::Upstream

mod body;
mod classify;
mod config;
mod policy;

pub use body::ReplayBody;
pub use classify::{FailureKind, IsCircuitOpen, classify_error};
pub use config::{MAX_ATTEMPTS, RetryConfig};
pub use policy::{RetryPolicy, Retryable};
