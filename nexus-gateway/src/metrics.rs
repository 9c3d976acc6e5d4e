//! Prometheus metrics with the seed's names, one registry per gateway (no globals).
//!
//! Label cardinality is bounded: `route` is the matched route template, `method`
//! is one of the standard methods or `OTHER`, `upstream` comes from `services.json`,
//! and the rate-limit counter has no per-IP label.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    rate_limit_hits: Counter,
    breaker_opens: Family<UpstreamLabels, Counter>,
    breaker_state: Family<UpstreamLabels, Gauge>,
    request_duration: Family<RouteLabel, Histogram>,
    upstream_duration: Family<UpstreamLabels, Histogram>,
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
            registry,
            requests,
            rate_limit_hits,
            breaker_opens,
            breaker_state,
            request_duration,
            upstream_duration,
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
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status_code: status,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabel { method, route })
            .observe(millis);
    }

    /// Records one upstream attempt.
    pub fn record_upstream(&self, upstream: &Arc<str>, millis: f64) {
        self.upstream_duration
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
            })
            .observe(millis);
    }

    /// Counts a rate-limit rejection.
    pub fn rate_limit_hit(&self) {
        self.rate_limit_hits.inc();
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

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
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
}
