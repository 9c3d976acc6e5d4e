//! Prometheus metrics with the seed's names, one registry per gateway (no globals).
//!
//! Label cardinality is bounded: `route` is the matched route template, `method`
//! is one of the standard methods or `OTHER`, `upstream` comes from `services.json`,
//! and the rate-limit counter has no per-IP label.

use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admin::{RecentRequests, TopOffenders};

/// The seed's latency buckets, milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 10] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0,
];

/// Labels of `nexus_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (bounded set).
    pub method: &'static str,
    /// Route template.
    pub route: &'static str,
    /// Response status.
    pub status_code: u16,
}

/// Labels of per-upstream series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Upstream base URL as written in `services.json`.
    pub upstream: Arc<str>,
}

/// Circuit state as the `nexus_circuit_breaker_state` gauge encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitGauge {
    /// 0
    Closed = 0,
    /// 1
    Open = 1,
    /// 2
    HalfOpen = 2,
}

/// All gateway metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Tells this registry's entries apart in the per-thread handle caches;
    /// renewed when series are removed, so cached handles are resolved again.
    id: AtomicU64,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rate_limit_hits: Counter,
    breaker_opens: Family<UpstreamLabels, Counter>,
    breaker_state: Family<UpstreamLabels, Gauge>,
    request_duration: Family<RouteLabel, Histogram>,
    upstream_duration: Family<UpstreamLabels, Histogram>,
    /// The last seconds, for `/dashboard` (fixed memory).
    recent: RecentRequests,
    /// Most rate-limited IPs, for `/dashboard` (bounded table).
    offenders: TopOffenders,
}

/// Label of the request-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    /// HTTP method (bounded set).
    pub method: &'static str,
    /// Route template.
    pub route: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let rate_limit_hits = Counter::default();
        let breaker_opens = Family::<UpstreamLabels, Counter>::default();
        let breaker_state = Family::<UpstreamLabels, Gauge>::default();
        let request_duration =
            Family::<RouteLabel, Histogram>::new_with_constructor(histogram as fn() -> Histogram);
        let upstream_duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "nexus_http_requests",
            "HTTP requests handled by the gateway",
            requests.clone(),
        );
        registry.register(
            "nexus_rate_limit_hits",
            "Requests rejected by the rate limiter",
            rate_limit_hits.clone(),
        );
        registry.register(
            "nexus_circuit_breaker_opens",
            "Circuit breaker openings per upstream",
            breaker_opens.clone(),
        );
        registry.register(
            "nexus_circuit_breaker_state",
            "Circuit state per upstream (0 closed, 1 open, 2 half-open)",
            breaker_state.clone(),
        );
        registry.register(
            "nexus_http_request_duration_ms",
            "Gateway request latency in milliseconds",
            request_duration.clone(),
        );
        registry.register(
            "nexus_upstream_request_duration_ms",
            "Upstream call latency in milliseconds",
            upstream_duration.clone(),
        );
        Self {
            id: AtomicU64::new(NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed)),
            registry,
            requests,
            rate_limit_hits,
            breaker_opens,
            breaker_state,
            request_duration,
            upstream_duration,
            recent: RecentRequests::new(),
            offenders: TopOffenders::new(),
        }
    }

    /// Records one finished request.
    pub fn record_request(
        &self,
        method: &http::Method,
        route: &'static str,
        status: u16,
        millis: f64,
    ) {
        let method = method_label(method);
        let id = self.id.load(Ordering::Relaxed);
        let found = REQUEST_HANDLES.with(|cache| {
            let cache = cache.try_borrow().ok()?;
            cache
                .iter()
                .find(|h| {
                    h.metrics == id && h.status == status && h.route == route && h.method == method
                })
                .map(|h| {
                    h.count.inc();
                    h.duration.observe(millis);
                })
        });
        if found.is_none() {
            let count = self
                .requests
                .get_or_create(&RequestLabels {
                    method,
                    route,
                    status_code: status,
                })
                .clone();
            let duration = self
                .request_duration
                .get_or_create(&RouteLabel { method, route })
                .clone();
            count.inc();
            duration.observe(millis);
            remember(
                &REQUEST_HANDLES,
                RequestHandles {
                    metrics: id,
                    method,
                    route,
                    status,
                    count,
                    duration,
                },
            );
        }
        self.recent.record(status, millis);
    }

    /// Records one upstream attempt.
    pub fn record_upstream(&self, upstream: &Arc<str>, millis: f64) {
        let id = self.id.load(Ordering::Relaxed);
        let found = UPSTREAM_HANDLES.with(|cache| {
            let cache = cache.try_borrow().ok()?;
            cache
                .iter()
                .find(|h| h.metrics == id && *h.upstream == **upstream)
                .map(|h| h.duration.observe(millis))
        });
        if found.is_none() {
            let duration = self
                .upstream_duration
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.clone(),
                })
                .clone();
            duration.observe(millis);
            remember(
                &UPSTREAM_HANDLES,
                UpstreamHandle {
                    metrics: id,
                    upstream: upstream.clone(),
                    duration,
                },
            );
        }
    }

    /// Counts a rate-limit rejection.
    pub fn rate_limit_hit(&self) {
        self.rate_limit_hits.inc();
        self.recent.record_rate_limited();
    }

    /// Counts a rate-limit rejection of `ip` (the IP goes to the dashboard's
    /// bounded top-offenders table, never into a metric label).
    pub fn rate_limited(&self, ip: Option<IpAddr>) {
        self.rate_limit_hit();
        if let Some(ip) = ip {
            self.offenders.record(ip);
        }
    }

    /// Counts a request refused by the blocklist.
    pub fn ip_blocked(&self) {
        self.recent.record_blocked();
    }

    /// Requests over the last seconds (rate, latency quantiles, statuses).
    pub fn recent(&self) -> &RecentRequests {
        &self.recent
    }

    /// The IPs the rate limiter rejected most.
    pub fn offenders(&self) -> &TopOffenders {
        &self.offenders
    }

    /// Records a circuit state change (and counts openings).
    pub fn circuit_state(&self, upstream: &Arc<str>, state: CircuitGauge) {
        let labels = UpstreamLabels {
            upstream: upstream.clone(),
        };
        if state == CircuitGauge::Open {
            self.breaker_opens.get_or_create(&labels).inc();
        }
        self.breaker_state.get_or_create(&labels).set(state as i64);
    }

    /// Removes the per-upstream series of an upstream that left the endpoint
    /// set (circuit state, openings, latency), so `/metrics` stops reporting
    /// it. Handles cached per thread are resolved again afterwards.
    pub fn forget_upstream(&self, upstream: &Arc<str>) {
        let labels = UpstreamLabels {
            upstream: upstream.clone(),
        };
        self.breaker_state.remove(&labels);
        self.breaker_opens.remove(&labels);
        self.upstream_duration.remove(&labels);
        self.id.store(
            NEXT_METRICS_ID.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    /// OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in the given exposition format.
    pub fn encode_as(&self, format: ExpositionFormat) -> String {
        match format {
            ExpositionFormat::OpenMetrics => self.encode(),
            ExpositionFormat::PrometheusText => openmetrics_to_text(&self.encode()),
        }
    }
}

/// The exposition formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpositionFormat {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`), the default and
    /// what Prometheus asks for first.
    OpenMetrics,
    /// The classic Prometheus text format 0.0.4 (`text/plain`), for clients
    /// that ask for it explicitly, such as `promtool check metrics`'s parser.
    PrometheusText,
}

impl ExpositionFormat {
    /// Picks the format from an `Accept` header: OpenMetrics when it is
    /// accepted or nothing specific is asked for, the classic text format
    /// when `text/plain` is asked for without OpenMetrics.
    pub fn negotiate(accept: Option<&http::HeaderValue>) -> Self {
        let accept = accept.and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !accept.contains("application/openmetrics-text") && accept.contains("text/plain") {
            Self::PrometheusText
        } else {
            Self::OpenMetrics
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites an OpenMetrics text exposition (as `prometheus-client` writes
/// it) in the classic Prometheus text format: counter families are named
/// with their `_total` suffix in `HELP`/`TYPE` (OpenMetrics names the family
/// without it, so a classic parser would see samples without help), OpenMetrics-only
/// types become `untyped`, and `# UNIT` / `# EOF` lines are dropped.
pub fn openmetrics_to_text(om: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(om.len() + 256);
    // A HELP line waits for its TYPE line, which decides the family's name.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, text)) = help.take() {
                let _ = writeln!(out, "# HELP {name} {text}");
            }
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((h, text)) = help.take() {
                let h = if h == name { family.as_str() } else { h };
                let _ = writeln!(out, "# HELP {h} {text}");
            }
            let _ = writeln!(out, "# TYPE {family} {kind}");
            continue;
        }
        if let Some((name, text)) = help.take() {
            let _ = writeln!(out, "# HELP {name} {text}");
        }
        if !(line.starts_with("# UNIT ") || line == "# EOF") {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some((name, text)) = help {
        let _ = writeln!(out, "# HELP {name} {text}");
    }
    out
}

static NEXT_METRICS_ID: AtomicU64 = AtomicU64::new(0);

/// Most cached handles per thread and cache (cleared when full: label sets are
/// bounded, see the module docs, so a full cache means many registries).
const HANDLE_CACHE: usize = 128;

/// Pre-resolved series of one request label set: recording a request is then
/// an increment and an observation, without hashing labels or taking the
/// family's lock.
struct RequestHandles {
    metrics: u64,
    method: &'static str,
    route: &'static str,
    status: u16,
    count: Counter,
    duration: Histogram,
}

/// Pre-resolved upstream latency series.
struct UpstreamHandle {
    metrics: u64,
    upstream: Arc<str>,
    duration: Histogram,
}

thread_local! {
    static REQUEST_HANDLES: RefCell<Vec<RequestHandles>> = const { RefCell::new(Vec::new()) };
    static UPSTREAM_HANDLES: RefCell<Vec<UpstreamHandle>> = const { RefCell::new(Vec::new()) };
}

fn remember<T: 'static>(cache: &'static std::thread::LocalKey<RefCell<Vec<T>>>, entry: T) {
    cache.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            if c.len() == HANDLE_CACHE {
                c.clear();
            }
            c.push(entry);
        }
    });
}

/// Maps a method to a bounded label.
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_handles_count_per_registry_and_label_set() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let up: Arc<str> = Arc::from("http://127.0.0.1:3001");
        for _ in 0..3 {
            a.record_request(&http::Method::GET, "/api/*", 200, 3.0);
            a.record_upstream(&up, 1.0);
        }
        a.record_request(&http::Method::GET, "/api/*", 503, 3.0);
        b.record_request(&http::Method::GET, "/api/*", 200, 3.0);
        let (ta, tb) = (a.encode(), b.encode());
        let line = |s: u16| {
            format!(r#"nexus_http_requests_total{{method="GET",route="/api/*",status_code="{s}"}}"#)
        };
        assert!(ta.contains(&format!("{} 3", line(200))), "{ta}");
        assert!(ta.contains(&format!("{} 1", line(503))), "{ta}");
        assert!(tb.contains(&format!("{} 1", line(200))), "{tb}");
        assert!(
            ta.contains(
                r#"nexus_upstream_request_duration_ms_count{upstream="http://127.0.0.1:3001"} 3"#
            ),
            "{ta}"
        );
        assert!(
            !tb.contains("nexus_upstream_request_duration_ms_count{"),
            "{tb}"
        );
    }

    #[test]
    fn a_forgotten_upstream_has_no_series_and_starts_afresh() {
        let m = Metrics::new();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("http://a:1"), Arc::from("http://b:1"));
        for u in [&a, &b] {
            m.circuit_state(u, CircuitGauge::Open);
            m.record_upstream(u, 2.0);
            m.record_upstream(u, 2.0); // through the per-thread cache
        }
        m.forget_upstream(&a);
        let text = m.encode();
        assert!(!text.contains(r#"upstream="http://a:1""#), "{text}");
        assert!(text.contains(r#"nexus_circuit_breaker_state{upstream="http://b:1"} 1"#));
        // A cached handle of the removed series is not used again.
        m.record_upstream(&a, 2.0);
        m.record_upstream(&b, 2.0);
        let text = m.encode();
        assert!(
            text.contains(r#"nexus_upstream_request_duration_ms_count{upstream="http://a:1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"nexus_upstream_request_duration_ms_count{upstream="http://b:1"} 3"#),
            "{text}"
        );
    }

    #[test]
    fn exposes_seed_names() {
        let m = Metrics::new();
        m.record_request(&http::Method::GET, "/api/*", 200, 3.0);
        m.rate_limit_hit();
        m.circuit_state(&Arc::from("http://127.0.0.1:3001"), CircuitGauge::Open);
        m.record_upstream(&Arc::from("http://127.0.0.1:3001"), 2.0);
        let text = m.encode();
        assert!(
            text.contains(
                r#"nexus_http_requests_total{method="GET",route="/api/*",status_code="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("nexus_rate_limit_hits_total 1"), "{text}");
        assert!(
            text.contains(
                r#"nexus_circuit_breaker_opens_total{upstream="http://127.0.0.1:3001"} 1"#
            )
        );
        assert!(
            text.contains(r#"nexus_circuit_breaker_state{upstream="http://127.0.0.1:3001"} 1"#)
        );
        assert!(
            text.contains(
                r#"nexus_http_request_duration_ms_bucket{le="5.0",method="GET",route="/api/*"} 1"#
            ) || text.contains(
                r#"nexus_http_request_duration_ms_bucket{method="GET",route="/api/*",le="5.0"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("nexus_upstream_request_duration_ms_count"));
    }

    #[test]
    fn classic_text_names_counter_families_with_total() {
        let m = Metrics::new();
        m.record_request(&http::Method::GET, "/api/*", 200, 3.0);
        m.rate_limit_hit();
        let text = m.encode_as(ExpositionFormat::PrometheusText);
        assert!(text.contains("# HELP nexus_http_requests_total "), "{text}");
        assert!(
            text.contains("# TYPE nexus_http_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nexus_rate_limit_hits_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE nexus_http_request_duration_ms histogram\n"),
            "{text}"
        );
        assert!(text.contains("nexus_rate_limit_hits_total 1\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        // Samples are unchanged.
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&text), samples(&m.encode()));
    }

    #[test]
    fn negotiation_prefers_openmetrics() {
        let f =
            |a: &'static str| ExpositionFormat::negotiate(Some(&http::HeaderValue::from_static(a)));
        assert_eq!(
            ExpositionFormat::negotiate(None),
            ExpositionFormat::OpenMetrics
        );
        assert_eq!(f("*/*"), ExpositionFormat::OpenMetrics);
        assert_eq!(f("text/plain"), ExpositionFormat::PrometheusText);
        assert_eq!(
            f(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            ),
            ExpositionFormat::OpenMetrics
        );
    }
}
