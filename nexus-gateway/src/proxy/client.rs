//! The pooled upstream HTTP client.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::UpstreamBody;
use crate::config::ProxySettings;

/// Pooled keep-alive client (HTTP/1.1, or HTTP/2 with prior knowledge).
pub type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// Builds the client from the proxy settings.
pub(super) fn build(p: &ProxySettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(p.timeout));
    let mut b = Client::builder(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(p.pool_max_idle_per_host)
        .http2_only(p.http2);
    b.build(connector)
}
