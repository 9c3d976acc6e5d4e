//! The consumer's admin HTTP server (plain HTTP/1.1, loopback by default).
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /stats` | JSON [`StatsSnapshot`](crate::StatsSnapshot), plus a `producer` object with [`Admin::producer`] |
//! | `GET /healthz` | `{"status":"ok"}` |
//!
//! Anything else is `404` (`405` for another method on a known path), with
//! a JSON `{"error":..}` body; every answer carries `Cache-Control:
//! no-store`. The answers, bounds and shutdown are those of [`nexus_admin`],
//! shared with the cache proxy's admin server.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections (more wait in the accept
//! queue), request heads must arrive within [`HEADER_TIMEOUT`], a connection
//! lives at most [`CONNECTION_LIFETIME`]; on shutdown, requests in flight get
//! [`SHUTDOWN_DRAIN`] to finish. Request bodies are never read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nexus_events::EmitterStatsHandle;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::Stats;

/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = nexus_admin::MAX_CONNECTIONS;
/// Bound on receiving a request head.
pub const HEADER_TIMEOUT: Duration = nexus_admin::HEADER_TIMEOUT;
/// Bound on one connection's life, keep-alive included.
pub const CONNECTION_LIFETIME: Duration = nexus_admin::CONNECTION_LIFETIME;
/// After shutdown, how long requests in flight may take to finish (idle
/// connections close at once).
pub const SHUTDOWN_DRAIN: Duration = nexus_admin::SHUTDOWN_DRAIN;

struct State {
    stats: Arc<Stats>,
    producer: Option<EmitterStatsHandle>,
    registry: Registry,
}

/// Serves `/metrics`, `/stats` and `/healthz` for `stats` on `listener`
/// until `shutdown` resolves; then lets requests in flight finish (bounded
/// by [`SHUTDOWN_DRAIN`]) and returns. Always `Ok`: a failed accept or
/// connection is logged and the server goes on.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    Admin::new(stats).serve(listener, shutdown).await
}

/// The admin server with options; [`serve`] is `Admin::new(stats).serve(..)`.
#[derive(Debug, Clone)]
pub struct Admin {
    stats: Arc<Stats>,
    producer: Option<EmitterStatsHandle>,
}

impl Admin {
    /// An admin server for `stats`.
    pub fn new(stats: Arc<Stats>) -> Self {
        Self {
            stats,
            producer: None,
        }
    }

    /// Also reports an event producer running in the same process (as in
    /// `full_stack`): a `producer` object in `/stats` and the
    /// `nexus_events_*` metrics (see [`crate::metrics::register_producer`]).
    pub fn producer(mut self, producer: EmitterStatsHandle) -> Self {
        self.producer = Some(producer);
        self
    }

    /// Serves until `shutdown` resolves (see [`serve`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let mut registry = crate::metrics::registry(self.stats.clone());
        if let Some(p) = &self.producer {
            crate::metrics::register_producer(&mut registry, p.clone());
        }
        let state = Arc::new(State {
            stats: self.stats,
            producer: self.producer,
            registry,
        });
        nexus_admin::serve(listener, state, shutdown).await;
        Ok(())
    }
}

impl nexus_admin::Source for State {
    fn metrics(&self) -> String {
        crate::metrics::encode(&self.registry)
    }

    fn stats(&self) -> Vec<u8> {
        stats_json(self)
    }
}

fn stats_json(state: &State) -> Vec<u8> {
    let mut json = serde_json::to_value(state.stats.snapshot()).unwrap_or_default();
    if let (Some(p), Some(obj)) = (&state.producer, json.as_object_mut()) {
        let s = p.get();
        obj.insert(
            "producer".to_owned(),
            serde_json::json!({
                "emitted": s.emitted,
                "sent": s.sent,
                "failed": s.failed,
                "dropped": s.dropped(),
                "dropped_queue_full": s.dropped_full,
                "queued": s.queued,
                "queue_capacity": s.queue_capacity,
            }),
        );
    }
    serde_json::to_vec(&json).unwrap_or_default()
}
