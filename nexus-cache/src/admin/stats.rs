//! `/stats`: a JSON summary for dashboards (the gateway's `/dashboard` page
//! reads it). Field names are an interface: add, never rename.
//! (`held_readers` is the number of readers held now; it briefly was the
//! running total, which is `held_readers_total`.)
//!
//! ```json
//! {"clients": 3, "commands_total": 1200, "get_hits": 900, "get_misses": 100,
//!  "hit_ratio": 0.9, "collapsed": 40, "held_readers": 0,
//!  "held_readers_total": 12,
//!  "hot_keys": [{"key": "product:1", "hits_per_second": 812.5}],
//!  "upstream_latency_p50_us": 128, "upstream_latency_p99_us": 512,
//!  "mechanisms": {"collapsed_calls": 40, "hot_keys": 2, ...},
//!  "proxy": {"commands": 1200, "forwarded": 1100, ...}}
//! ```

use serde_json::{Map, Value, json};

use super::AdminState;

/// Hot keys listed (hottest first).
const STATS_KEYS: usize = 10;

pub(super) fn render(state: &AdminState) -> Value {
    let s = state.metrics.snapshot();
    let mech = state.mechanisms.snapshot();
    let fields = mech.fields();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, v)| *v)
    };
    let hot_keys: Vec<Value> = state
        .hot
        .as_ref()
        .map(|h| h.top(STATS_KEYS))
        .unwrap_or_default()
        .into_iter()
        .map(|(key, rate)| {
            json!({
                "key": String::from_utf8_lossy(&key),
                // One decimal, as NEXUS.HOTKEYS.
                "hits_per_second": (rate * 10.0).round() / 10.0,
            })
        })
        .collect();
    let mechanisms: Map<String, Value> = fields
        .iter()
        .map(|(n, v)| ((*n).to_owned(), json!(v)))
        .collect();
    let proxy: Map<String, Value> = s
        .entries()
        .iter()
        .map(|(n, v)| ((*n).to_owned(), json!(v)))
        .collect();
    json!({
        "clients": s.connected_clients,
        "commands_total": s.commands,
        "get_hits": s.get_hits,
        "get_misses": s.get_misses,
        "hit_ratio": s.hit_ratio(),
        "collapsed": field("collapsed_calls"),
        // Readers held right now (what the dashboard shows), and since start.
        "held_readers": field("held_now"),
        "held_readers_total": field("held_readers"),
        "hot_keys": hot_keys,
        "upstream_latency_p50_us": s.upstream_latency_p50_us,
        "upstream_latency_p99_us": s.upstream_latency_p99_us,
        "mechanisms": mechanisms,
        "proxy": proxy,
    })
}
