//! `GET /admin/overview`: the gateway's own dashboard numbers in one compact
//! JSON document. Every list in it is bounded.

use serde_json::{Value, json};

use super::window::WINDOW_SECS;
use crate::gateway::Shared;

/// Per-second samples returned (one minute).
const SERIES_SECS: usize = 60;
/// Upstreams listed (the rest are counted in `upstreams_truncated`).
const MAX_UPSTREAMS: usize = 256;
/// Top rate-limited IPs listed.
const TOP_OFFENDERS: usize = 10;
/// Blocked IPs listed (the total is `blocklist.blocked_ips`).
const BLOCKED_SAMPLE: usize = 20;

/// Breaker state of `url` from the `/cb-stats` document.
fn breaker_state(cb: &Value, url: &str, enabled: bool) -> Value {
    if !enabled {
        return json!("disabled");
    }
    cb["circuits"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["endpoint"].as_str() == Some(url)))
        .map_or_else(
            // Breakers are created on an upstream's first call; until then
            // calls would flow, as through a closed one.
            || json!("closed"),
            |c| c["state"].clone(),
        )
}

/// Builds the overview document.
pub(crate) fn overview(shared: &Shared) -> Value {
    let s = &shared.settings;
    let metrics = &shared.metrics;
    let lb = shared.proxy.lb_stats();
    let cb = shared.proxy.cb_stats();
    let breakers_on = s.breaker.is_some();
    let endpoints = lb["endpoints"].as_array().map_or(&[][..], Vec::as_slice);
    let upstreams: Vec<Value> = endpoints
        .iter()
        .take(MAX_UPSTREAMS)
        .map(|e| {
            let url = e["url"].as_str().unwrap_or_default();
            json!({
                "url": url,
                "healthy": e["healthy"],
                "in_flight": e["in_flight"],
                "handled": e["handled"],
                "failed": e["failed"],
                "ewma_ms": e["ewma_ms"],
                "breaker": breaker_state(&cb, url, breakers_on),
            })
        })
        .collect();
    let open_circuits = cb["circuits"]
        .as_array()
        .map_or(0, |cs| cs.iter().filter(|c| c["state"] != "closed").count());
    let blocklist = match &shared.blocklist {
        Some(list) => json!({
            "enabled": true,
            "blocked_ips": list.len(),
            "sample": list.sample(BLOCKED_SAMPLE),
        }),
        None => json!({ "enabled": false, "blocked_ips": 0, "sample": [] }),
    };
    let events = &shared.events;
    json!({
        "gateway": {
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_secs": shared.dashboard.started.elapsed().as_secs(),
            "dev_mode": s.dev_mode,
        },
        "requests": metrics.recent().summary(),
        "series": metrics.recent().series(SERIES_SECS),
        "upstreams": upstreams,
        "upstreams_truncated": endpoints.len().saturating_sub(MAX_UPSTREAMS),
        "strategy": lb["strategy"],
        "breakers": {
            "enabled": breakers_on,
            "open": open_circuits,
        },
        "rate_limit": {
            "enabled": s.rate_limit.is_some(),
            "window_secs": WINDOW_SECS,
            "top_offenders": metrics.offenders().top(TOP_OFFENDERS),
        },
        "blocklist": blocklist,
        "events": {
            "sink": events.kind(),
            "stats": events.stats(),
        },
        "panels": {
            "cache": s.dashboard.cache_admin.is_some(),
            "consumer": s.dashboard.consumer_admin.is_some(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_state_reads_cb_stats() {
        let cb = json!({ "circuits": [
            { "endpoint": "http://a:1", "state": "open" },
            { "endpoint": "http://b:1", "state": "half_open" },
        ]});
        assert_eq!(breaker_state(&cb, "http://a:1", true), "open");
        assert_eq!(breaker_state(&cb, "http://b:1", true), "half_open");
        assert_eq!(breaker_state(&cb, "http://c:1", true), "closed");
        assert_eq!(breaker_state(&cb, "http://a:1", false), "disabled");
    }
}
