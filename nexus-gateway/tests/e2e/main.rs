//! End-to-end tests: the gateway on a real loopback socket in front of real HTTP
//! upstreams (`nexus-testkit::HttpUpstream`), driven by a real HTTP/1.1 client.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

mod aborted;
mod admin;
mod auth;
mod blocklist;
mod bodies;
mod conn;
mod edges;
mod events;
mod forwarding;
mod h2;
mod hardening;
mod harness;
mod kafka;
mod kafka_trace;
mod paths;
mod per_core;
mod proxy;
mod prune;
mod resilience;
mod streams;
mod trace_context;
