//! The pooled upstream HTTP client, one pool per worker thread.
//!
//! A single shared pool makes every request take the pool mutex, and a
//! connection opened by one worker thread is often checked out by another, so
//! the response crosses threads (an extra wake-up per request). [`Clients`]
//! keeps one pool per thread slot instead: a request uses the pool of the
//! thread it runs on, and the connection tasks that pool spawns start on that
//! same thread. With one current-thread runtime per core
//! ([`Gateway::run_per_core`](crate::Gateway::run_per_core)) a proxied request
//! never leaves its thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamBody;
use super::connect::PlainConnector;
use crate::config::ProxySettings;

/// Pooled keep-alive client (HTTP/1.1, or HTTP/2 with prior knowledge).
pub type UpstreamClient = Client<PlainConnector, UpstreamBody>;

/// Most per-thread pools a proxy keeps (threads beyond this share pools
/// round-robin). Bounds idle upstream connections to
/// `MAX_POOLS * pool_max_idle_per_host` per endpoint.
pub(super) const MAX_POOLS: usize = 16;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's slot, assigned on first use (`usize::MAX` = not yet).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn thread_slot() -> usize {
    SLOT.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

/// One pooled client per thread slot (at most [`MAX_POOLS`]).
pub(super) struct Clients {
    pools: Box<[UpstreamClient]>,
}

impl Clients {
    /// One pool per available core (at least one, at most [`MAX_POOLS`]).
    pub(super) fn new(p: &ProxySettings) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_POOLS);
        Self {
            pools: (0..n).map(|_| build(p)).collect(),
        }
    }

    /// The pool of the calling thread.
    pub(super) fn get(&self) -> &UpstreamClient {
        &self.pools[thread_slot() % self.pools.len()]
    }
}

/// Builds one client from the proxy settings.
fn build(p: &ProxySettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(p.timeout));
    let mut b = Client::builder(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(p.pool_max_idle_per_host)
        .http2_only(p.http2)
        // The proxy sets `Host` itself (HTTP/1.1 only; HTTP/2 sends `:authority`).
        .set_host(!p.http2);
    b.build(PlainConnector(connector))
}
