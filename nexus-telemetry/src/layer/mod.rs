//! Tower middleware creating OpenTelemetry-aware `tracing` spans.
//!
//! - [`ServerTraceLayer`]: one `SERVER` span per inbound request, parented on
//!   the incoming `traceparent`.
//! - [`ClientTraceLayer`]: one `CLIENT` span per outbound attempt, child of the
//!   current span, with its `traceparent` injected into the outgoing request.
//!   Put it *inside* the retry layer so each attempt is its own child.

mod client;
mod outcome;
mod route;
mod server;

pub use client::{ClientTrace, ClientTraceFuture, ClientTraceLayer, ResendCount, client_span};
pub use route::RouteTemplate;
pub use server::{ServerTrace, ServerTraceFuture, ServerTraceLayer, server_span};
