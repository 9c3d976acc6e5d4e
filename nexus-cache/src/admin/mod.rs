//! The admin HTTP server (crate feature `admin`): what operators and
//! dashboards read while the proxy runs.
//!
//! | path | answer |
//! |---|---|
//! | `GET /metrics` | Prometheus text exposition (0.0.4), `nexus_cache_*` |
//! | `GET /stats` | JSON summary: clients, commands, GET hits/misses and hit ratio, collapsed calls, hot keys, held readers, upstream latency, every mechanism counter |
//! | `GET /healthz` | `{"status":"ok"}` while the proxy serves |
//!
//! Anything else is `404` (`405` for another method on a known path), with
//! a JSON `{"error":..}` body; the answers, bounds and shutdown are those of
//! [`nexus_admin`], shared with the consumer's admin server. The server is
//! HTTP/1.1 on hyper, started by
//! [`Proxy::serve`](crate::Proxy::serve) when
//! [`ProxyConfig::admin`](crate::ProxyConfig::admin) is set and stopped with
//! the proxy. It reads the same atomics as `NEXUS.STATS` at request time;
//! the command path does not know it exists.
//!
//! Bounds: at most 64 admin connections (more wait in the listen backlog),
//! request heads within 5 s, a connection lives at most 60 s; on shutdown,
//! requests in flight get 1 s to finish.

mod prometheus;
mod stats;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::hotkeys::HotKeys;
use crate::metrics::Metrics;
use crate::policy::metrics::MechanismMetrics;

/// What the admin endpoints read.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) mechanisms: Arc<MechanismMetrics>,
    /// The live hot-key detector; `None` without a policy.
    pub(crate) hot: Option<Arc<HotKeys>>,
}

#[derive(Debug)]
struct App {
    state: AdminState,
    registry: Registry,
}

impl nexus_admin::Source for App {
    fn metrics(&self) -> String {
        prometheus::render(&self.registry)
    }

    fn stats(&self) -> Vec<u8> {
        stats::render(&self.state).to_string().into_bytes()
    }
}

/// Serves `listener` until `shutdown` is cancelled; requests in flight then
/// get a bounded time to finish (see [`nexus_admin::serve`]).
pub(crate) fn spawn(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let app = Arc::new(App {
        registry: prometheus::registry(state.clone()),
        state,
    });
    tokio::spawn(nexus_admin::serve(
        listener,
        app,
        shutdown.cancelled_owned(),
    ))
}
