//! [`StatsSource`]: reads another service's admin `GET /stats` JSON for the
//! dashboard, server side, so the page stays same-origin (no CORS).
//!
//! Every fetch is bounded: [`FETCH_TIMEOUT`] for connect, headers and body
//! together, [`MAX_STATS_BYTES`] of body. Fetches are coalesced: at most one
//! is in flight per source, and a result younger than [`REUSE_FOR`] is
//! served again, so any number of open dashboards cost the admin server about
//! one request per second. Failures are values ([`Fetched::Failed`]), turned
//! into a clear JSON error by the handler; they never fail the gateway.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::AdminUrl;

/// Bound on one fetch: connect, response headers and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_millis(300);
/// Largest `/stats` body accepted.
pub const MAX_STATS_BYTES: usize = 256 * 1024;
/// A result this recent is reused instead of fetching again.
pub const REUSE_FOR: Duration = Duration::from_millis(500);

/// Why a fetch failed (the `status` of the JSON the handler returns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// Connection refused, reset, DNS failure.
    Unreachable,
    /// No complete answer within [`FETCH_TIMEOUT`].
    Timeout,
    /// An answer that is not a 200 with a JSON object of at most
    /// [`MAX_STATS_BYTES`].
    BadResponse,
}

impl FetchError {
    /// The machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::BadResponse => "bad_response",
        }
    }

    /// The HTTP status the gateway answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable | Self::BadResponse => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The result of one fetch.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The admin server's JSON object.
    Ok(serde_json::Value),
    /// What went wrong, and a human-readable detail.
    Failed(FetchError, String),
}

/// One admin server's `/stats`, fetched on demand with coalescing.
pub struct StatsSource {
    url: AdminUrl,
    client: Client<HttpConnector, Empty<Bytes>>,
    /// One fetch in flight at a time.
    gate: Semaphore,
    /// Last result and when it was taken. std Mutex: held for a clone or a
    /// store, never across `.await`.
    last: Mutex<Option<(Instant, Arc<Fetched>)>>,
}

impl std::fmt::Debug for StatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSource")
            .field("url", &self.url.base())
            .finish_non_exhaustive()
    }
}

impl StatsSource {
    /// A source reading `url`'s `/stats`.
    pub fn new(url: AdminUrl) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(FETCH_TIMEOUT));
        // No pooling: one short connection per second at most, and no
        // connection task tied to whichever runtime happened to open it.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        Self {
            url,
            client,
            gate: Semaphore::new(1),
            last: Mutex::new(None),
        }
    }

    /// The admin server's URL.
    pub fn url(&self) -> &AdminUrl {
        &self.url
    }

    fn recent(&self) -> Option<Arc<Fetched>> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < REUSE_FOR)
            .map(|(_, f)| f.clone())
    }

    /// The current stats: a recent result, or a new fetch (waiting at most
    /// about [`FETCH_TIMEOUT`] for one already in flight).
    pub async fn get(&self) -> Arc<Fetched> {
        if let Some(f) = self.recent() {
            return f;
        }
        let permit = tokio::time::timeout(FETCH_TIMEOUT, self.gate.acquire()).await;
        // Whoever held the gate may have just stored a result.
        if let Some(f) = self.recent() {
            return f;
        }
        let Ok(Ok(_permit)) = permit else {
            return Arc::new(Fetched::Failed(
                FetchError::Timeout,
                "another fetch is still running".to_owned(),
            ));
        };
        let fetched = Arc::new(self.fetch().await);
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), fetched.clone()));
        fetched
    }

    async fn fetch(&self) -> Fetched {
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch_unbounded()).await {
            Ok(f) => f,
            Err(_) => Fetched::Failed(
                FetchError::Timeout,
                format!("no answer within {} ms", FETCH_TIMEOUT.as_millis()),
            ),
        }
    }

    async fn fetch_unbounded(&self) -> Fetched {
        let uri = self.url.stats_uri().clone();
        let req = match Request::get(uri)
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, "nexus-gateway-dashboard")
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => return Fetched::Failed(FetchError::BadResponse, e.to_string()),
        };
        let res = match self.client.request(req).await {
            Ok(r) => r,
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                return Fetched::Failed(FetchError::Unreachable, msg);
            }
        };
        let status = res.status();
        let body = match Limited::new(res.into_body(), MAX_STATS_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return Fetched::Failed(
                    FetchError::BadResponse,
                    format!("body: {e} (limit {MAX_STATS_BYTES} bytes)"),
                );
            }
        };
        if status != StatusCode::OK {
            return Fetched::Failed(FetchError::BadResponse, format!("status {status}"));
        }
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v @ serde_json::Value::Object(_)) => Fetched::Ok(v),
            Ok(_) => Fetched::Failed(FetchError::BadResponse, "not a JSON object".to_owned()),
            Err(e) => Fetched::Failed(FetchError::BadResponse, format!("not JSON: {e}")),
        }
    }
}
