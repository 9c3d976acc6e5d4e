//! `/metrics`: the proxy's counters as a Prometheus text (0.0.4) exposition,
//! the format `promtool check metrics` lints and every scraper reads, read from the live atomics at scrape time by a
//! `prometheus-client` [`Collector`]: nothing is registered or updated on the
//! command path.
//!
//! Mechanism counters ([`MechanismSnapshot::fields`]) are exported
//! generically, so a counter added there appears without a change here:
//! `name` becomes `nexus_cache_<name>_total` (a counter), except names ending
//! in `_bytes`, `_entries` or `_now`, which are current values and become
//! gauges `nexus_cache_<name>` (a near cache's `near_cache_bytes`, say).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::metrics::SEED_BUCKETS_MS;
use crate::policy::metrics::MechanismSnapshot;

/// Hot keys exported as `nexus_cache_hot_key_hits_per_second{key}`: a fixed
/// bound on that metric's series per scrape.
pub(super) const TOP_KEYS: usize = 10;

/// Mechanism fields exported under a name of their own (the dashboard's).
const RENAMED: &[(&str, &str)] = &[("collapsed_calls", "nexus_cache_collapsed")];

/// Reads an [`AdminState`] on every scrape.
#[derive(Debug)]
struct ProxyCollector(AdminState);

/// Whether a mechanism field is a current value rather than a running count.
pub(super) fn is_gauge(name: &str) -> bool {
    name.ends_with("_bytes") || name.ends_with("_entries") || name.ends_with("_now")
}

/// The Prometheus name of a mechanism field (without the `_total` a counter
/// gets from the encoder).
fn mechanism_name(name: &str) -> String {
    if let Some((_, to)) = RENAMED.iter().find(|(from, _)| *from == name) {
        return (*to).to_owned();
    }
    format!("nexus_cache_{}", name.trim_end_matches("_total"))
}

/// A registry holding the proxy's collector.
pub(super) fn registry(state: AdminState) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyCollector(state)));
    registry
}

/// The exposition text.
pub(super) fn render(registry: &Registry) -> String {
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

fn counter(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for ProxyCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = self.0.metrics.snapshot();
        let mech: MechanismSnapshot = self.0.mechanisms.snapshot();

        let forwarded = s
            .commands
            .saturating_sub(s.pinned_commands)
            .saturating_sub(s.local_commands);
        {
            let c = ConstCounter::new(0u64);
            let mut family = enc.encode_descriptor(
                "nexus_cache_commands",
                "Client commands received, by class (forwarded: over the shared pool; pinned: on a dedicated connection; local: answered by the proxy).",
                None,
                c.metric_type(),
            )?;
            for (class, v) in [
                ("forwarded", forwarded),
                ("pinned", s.pinned_commands),
                ("local", s.local_commands),
            ] {
                ConstCounter::new(v).encode(family.encode_family(&[("class", class)])?)?;
            }
        }
        counter(
            &mut enc,
            "nexus_cache_hits",
            "GET replies carrying a value.",
            s.get_hits,
        )?;
        counter(
            &mut enc,
            "nexus_cache_misses",
            "GET replies that were nil (key absent).",
            s.get_misses,
        )?;
        gauge(
            &mut enc,
            "nexus_cache_connected_clients",
            "Client connections open.",
            s.connected_clients,
        )?;
        gauge(
            &mut enc,
            "nexus_cache_pinned_clients",
            "Clients holding a dedicated upstream connection.",
            s.pinned_clients,
        )?;
        counter(
            &mut enc,
            "nexus_cache_connections",
            "Client connections accepted.",
            s.total_connections,
        )?;
        counter(
            &mut enc,
            "nexus_cache_rejected_connections",
            "Client connections refused at max_clients.",
            s.rejected_connections,
        )?;
        counter(
            &mut enc,
            "nexus_cache_proxy_errors",
            "Error replies generated by the proxy.",
            s.proxy_errors,
        )?;
        counter(
            &mut enc,
            "nexus_cache_upstream_errors",
            "Commands answered -ERR upstream ... (Redis unreachable, connection lost, timeout).",
            s.upstream_failed_commands,
        )?;
        counter(
            &mut enc,
            "nexus_cache_upstream_error_replies",
            "Error replies from Redis passed through on the shared pool.",
            s.upstream_error_replies,
        )?;
        counter(
            &mut enc,
            "nexus_cache_upstream_connects",
            "Upstream connections opened.",
            s.upstream_connects,
        )?;
        counter(
            &mut enc,
            "nexus_cache_upstream_connect_failures",
            "Failed upstream connection attempts.",
            s.upstream_connect_failures,
        )?;
        counter(
            &mut enc,
            "nexus_cache_upstream_batches",
            "Batches of pipelined commands sent over the shared pool.",
            s.upstream_batches,
        )?;

        let h = self.0.metrics.upstream_latency().seed_buckets();
        let mut buckets: Vec<(f64, u64)> = SEED_BUCKETS_MS
            .iter()
            .zip(h.counts)
            .map(|(&ms, c)| (ms as f64 / 1000.0, c))
            .collect();
        buckets.push((f64::INFINITY, h.counts[SEED_BUCKETS_MS.len()]));
        // The bucket loads and the count are independent reads: report the
        // count the buckets add up to, so the exposition is consistent.
        let count = buckets.iter().map(|(_, c)| c).sum();
        // Seconds, Prometheus's base unit (`promtool check metrics` rejects
        // `_ms`), in the seed's buckets (1 ms .. 2 s).
        enc.encode_descriptor(
            "nexus_cache_upstream_request_duration_seconds",
            "Round trip of a batch of commands over the shared pool.",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(h.sum_us as f64 / 1e6, count, &buckets, None)?;

        for (name, value) in mech.fields() {
            let help = format!("Cache mechanism field `{name}` (NEXUS.STATS).");
            let metric = mechanism_name(name);
            if is_gauge(name) {
                gauge(&mut enc, &metric, &help, value)?;
            } else {
                counter(&mut enc, &metric, &help, value)?;
            }
        }

        if let Some(hot) = &self.0.hot {
            let top = hot.top(TOP_KEYS);
            let g = ConstGauge::new(0.0f64);
            let mut family = enc.encode_descriptor(
                "nexus_cache_hot_key_hits_per_second",
                "Estimated reads per second of the current top 10 hot keys.",
                None,
                g.metric_type(),
            )?;
            for (key, rate) in key_labels(top) {
                ConstGauge::new(rate).encode(family.encode_family(&[("key", key.as_str())])?)?;
            }
        }
        Ok(())
    }
}

/// Hot keys as label values (lossy UTF-8), hottest first. Two binary keys
/// can map to the same text; only the first is kept, since a scrape must not
/// repeat a series.
fn key_labels(top: Vec<(Vec<u8>, f64)>) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::with_capacity(top.len());
    for (key, rate) in top {
        let key = String::from_utf8_lossy(&key).into_owned();
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, rate));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_keys_never_repeat_a_series() {
        let top = vec![
            (b"a\xff".to_vec(), 3.0),
            (b"a\xfe".to_vec(), 2.0),
            (b"b".to_vec(), 1.0),
        ];
        let labels = key_labels(top);
        assert_eq!(
            labels,
            vec![("a\u{fffd}".to_owned(), 3.0), ("b".to_owned(), 1.0)]
        );
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(mechanism_name("collapsed_calls"), "nexus_cache_collapsed");
        assert_eq!(
            mechanism_name("ttl_extensions"),
            "nexus_cache_ttl_extensions"
        );
        assert_eq!(mechanism_name("x_total"), "nexus_cache_x");
        assert!(is_gauge("near_cache_bytes") && is_gauge("held_now"));
        assert!(!is_gauge("hot_keys") && !is_gauge("held_readers"));
    }
}
