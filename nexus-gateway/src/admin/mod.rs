//! The live dashboard: the `/dashboard` page and the admin JSON it polls.
//!
//! - `GET /dashboard` (public): one self-contained HTML page (inline CSS, JS
//!   and SVG charts, no CDN, no build step) embedded in the binary, served
//!   with a strict `Content-Security-Policy` that allows exactly its own
//!   inline script and style (by hash) and requests to this origin.
//! - `GET /admin/overview` (token): the gateway's own numbers: request rate
//!   and p50/p90/p99 latency over the last [`WINDOW_SECS`] seconds and a
//!   per-second series ([`RecentRequests`]), status classes, upstreams with
//!   health, in-flight and breaker state, rate-limit rejections with the top
//!   offending IPs ([`TopOffenders`]), the blocklist, event sink counters.
//! - `GET /admin/dashboard/cache`, `/admin/dashboard/consumer` (token): the
//!   cache proxy's and the consumer's admin `GET /stats`, fetched server side
//!   ([`StatsSource`]: 300 ms, 256 KiB, coalesced) from the URLs in the
//!   `dashboard` config section, wrapped as
//!   `{"source","status":"ok","url","stats":{..}}` or, when the server cannot
//!   be read, a JSON error with `status` `not_configured` (404),
//!   `unreachable` / `bad_response` (502) or `timeout` (504).
//! - `GET /admin/dashboard` (token): all three in one document, what the
//!   page polls once per second (one request per second per open page, well
//!   under the default per-IP rate limit).
//!
//! The page gets its token from the URL fragment (`/dashboard#token=...`,
//! never sent to the server, removed from the address bar at once) or from a
//! sign-in form that calls `POST /auth/token`; it keeps it in
//! `sessionStorage`.

mod fetch;
mod offenders;
mod overview;
mod page;
mod window;

pub use fetch::{FETCH_TIMEOUT, FetchError, Fetched, MAX_STATS_BYTES, REUSE_FOR, StatsSource};
pub use offenders::{CAPACITY as OFFENDERS_CAPACITY, Offender, TopOffenders};
pub use window::{BUCKETS, RecentRequests, SLOTS, SecondSample, WINDOW_SECS, WindowSummary};

pub(crate) use overview::overview;
pub(crate) use page::Page;

use http::StatusCode;
use tokio::time::Instant;

use crate::config::DashboardSettings;
use crate::response::{GatewayResponse, json};

/// Which other service a dashboard panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    /// The cache proxy (`dashboard.cache_admin`).
    Cache,
    /// The consumer (`dashboard.consumer_admin`).
    Consumer,
}

impl Panel {
    /// The panel's name in JSON (`source`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Consumer => "consumer",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Self::Cache => "dashboard.cache_admin",
            Self::Consumer => "dashboard.consumer_admin",
        }
    }
}

/// The dashboard's state: the page and the admin servers it reads.
#[derive(Debug)]
pub(crate) struct Dashboard {
    pub(crate) page: Page,
    cache: Option<StatsSource>,
    consumer: Option<StatsSource>,
    pub(crate) started: Instant,
}

impl Dashboard {
    pub(crate) fn new(s: &DashboardSettings) -> Self {
        Self {
            page: Page::build(),
            cache: s.cache_admin.clone().map(StatsSource::new),
            consumer: s.consumer_admin.clone().map(StatsSource::new),
            started: Instant::now(),
        }
    }

    /// A panel's document and the HTTP status it is served with alone.
    pub(crate) async fn panel(&self, panel: Panel) -> (StatusCode, serde_json::Value) {
        let source = match panel {
            Panel::Cache => self.cache.as_ref(),
            Panel::Consumer => self.consumer.as_ref(),
        };
        let Some(source) = source else {
            return (
                StatusCode::NOT_FOUND,
                serde_json::json!({
                    "source": panel.name(),
                    "status": "not_configured",
                    "error": "not_configured",
                    "message": format!("set {} in the gateway config", panel.field()),
                }),
            );
        };
        let url = source.url().stats_uri().to_string();
        match &*source.get().await {
            Fetched::Ok(stats) => (
                StatusCode::OK,
                serde_json::json!({
                    "source": panel.name(),
                    "status": "ok",
                    "url": url,
                    "stats": stats,
                }),
            ),
            Fetched::Failed(e, message) => (
                e.status(),
                serde_json::json!({
                    "source": panel.name(),
                    "status": e.code(),
                    "error": e.code(),
                    "url": url,
                    "message": message,
                }),
            ),
        }
    }

    /// `GET /admin/dashboard/<panel>`.
    pub(crate) async fn panel_response(&self, panel: Panel) -> GatewayResponse {
        let (status, doc) = self.panel(panel).await;
        json(status, &doc)
    }
}
