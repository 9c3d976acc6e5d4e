//! The upstream client: HTTP/1.1 through [`H1Client`] (connections driven from
//! the request's task, pooled per thread), HTTP/2 with prior knowledge through
//! hyper-util's pooled client, one per thread slot.
//!
//! A single shared pool makes every request take the pool mutex, and a
//! connection opened by one worker thread is often checked out by another, so
//! the response crosses threads (an extra wake-up per request). Both clients
//! keep one pool per thread slot instead: a request uses the pool of the thread
//! it runs on. With one current-thread runtime per core
//! ([`Gateway::run_per_core`](crate::Gateway::run_per_core)) a proxied request
//! never leaves its thread.

use std::time::Duration;

use http::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamBody;
use super::h1::{H1Client, IDLE_TIMEOUT, UpstreamError};
use super::pool::{MAX_SLOTS, thread_slot};
use crate::body::GatewayBody;
use crate::config::ProxySettings;

/// hyper-util's pooled keep-alive client, which the gateway uses for HTTP/2
/// upstreams (prior knowledge).
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// The client for the configured upstream protocol.
pub(super) enum Clients {
    /// HTTP/1.1: per-thread idle lists, at most `pool_max_idle_per_host` per
    /// endpoint and thread slot.
    Http1(H1Client),
    /// HTTP/2: one hyper-util client per thread slot (at most [`MAX_SLOTS`]).
    Http2(Box<[UpstreamClient]>),
}

impl Clients {
    /// The client for `p.http2`.
    pub(super) fn new(p: &ProxySettings) -> Self {
        if !p.http2 {
            return Self::Http1(H1Client::new(p.pool_max_idle_per_host, p.timeout));
        }
        let n = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(1, MAX_SLOTS);
        Self::Http2((0..n).map(|_| build_h2(p)).collect())
    }

    /// Sends `req` (absolute URI) upstream; see [`H1Client::request`] for the
    /// HTTP/1.1 body handling. HTTP/2 bodies always stream.
    pub(super) async fn request(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<GatewayBody>, UpstreamError> {
        match self {
            Self::Http1(c) => c.request(req).await,
            Self::Http2(pools) => {
                let client = &pools[thread_slot() % pools.len()];
                Ok(client.request(req).await?.map(GatewayBody::Stream))
            }
        }
    }
}

/// Builds one HTTP/2 client from the proxy settings.
fn build_h2(p: &ProxySettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(p.timeout));
    let mut b = Client::builder(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(p.pool_max_idle_per_host)
        .http2_only(true)
        // HTTP/2 sends `:authority`, not `Host`.
        .set_host(false);
    b.build(connector)
}
