//! `/metrics`: the proxy's counters as a Prometheus text (0.0.4) exposition,
//! the format `promtool check metrics` lints and every scraper reads, read from the live atomics at scrape time by a
//! `prometheus-client` [`Collector`]: nothing is registered or updated on the
//! command path.
//!
//! Mechanism fields ([`MechanismSnapshot::fields`]) are exported
//! generically, so a field added there appears without a change here:
//! `name` becomes `nexus_cache_<name>_total` (a counter), except the fields
//! listed in [`MechanismSnapshot::GAUGES`] (current values such as
//! `held_now`), which become gauges `nexus_cache_<name>`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::AdminState;
use crate::metrics::SEED_BUCKETS_MS;
use crate::policy::metrics::MechanismSnapshot;

/// Hot keys exported as `nexus_cache_hot_key_hits_per_second{rank}`: a fixed
/// bound on that metric's series. Labels are ranks, never the keys: keys are
/// client-controlled (unbounded series churn, contents leaking to Prometheus).
pub(super) const TOP_KEYS: usize = 10;

/// The `rank` label values, hottest first.
const RANKS: [&str; TOP_KEYS] = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"];

/// Mechanism fields exported under a name of their own (the dashboard's).
const RENAMED: &[(&str, &str)] = &[("collapsed_calls", "nexus_cache_collapsed")];

/// Reads an [`AdminState`] on every scrape.
#[derive(Debug)]
struct ProxyCollector(AdminState);

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

        {
            let c = ConstCounter::new(0u64);
            let mut family = enc.encode_descriptor(
                "nexus_cache_commands",
                "Client commands received, by class, each counted where it is routed (forwarded: to the shared pool, GETs collapsed into another client's flight or held by the stampede guard included; pinned: on a dedicated connection, the command that pinned it included; local: answered by the proxy, a pin refused at max_pinned included).",
                None,
                c.metric_type(),
            )?;
            for (class, v) in [
                ("forwarded", s.routed_to_pool),
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
            if MechanismSnapshot::is_gauge(name) {
                gauge(&mut enc, &metric, &help, value)?;
            } else {
                counter(&mut enc, &metric, &help, value)?;
            }
        }

        if let Some(hot) = &self.0.hot {
            let g = ConstGauge::new(0.0f64);
            let mut family = enc.encode_descriptor(
                "nexus_cache_hot_key_hits_per_second",
                "Estimated reads per second of the key at each rank of the current top 10 hot keys (rank 1 is the hottest; the keys themselves are in /stats and NEXUS.HOTKEYS, never in labels).",
                None,
                g.metric_type(),
            )?;
            for (rank, (_, rate)) in RANKS.iter().zip(hot.top(TOP_KEYS)) {
                ConstGauge::new(rate).encode(family.encode_family(&[("rank", *rank)])?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rank_label_per_exported_key() {
        assert_eq!(RANKS.len(), TOP_KEYS);
        assert_eq!(RANKS.first(), Some(&"1"));
        assert_eq!(RANKS.last(), Some(&"10"));
    }

    #[test]
    fn mechanism_names() {
        assert_eq!(mechanism_name("collapsed_calls"), "nexus_cache_collapsed");
        assert_eq!(
            mechanism_name("ttl_extensions"),
            "nexus_cache_ttl_extensions"
        );
        assert_eq!(mechanism_name("x_total"), "nexus_cache_x");
        let gauge = MechanismSnapshot::is_gauge;
        assert!(gauge("near_cache_bytes") && gauge("held_now"));
        assert!(!gauge("hot_keys") && !gauge("held_readers"));
        // A counter whose name merely looks like a gauge stays a counter.
        assert!(!gauge("evicted_bytes"));
        // Every listed gauge that exists is a field.
        let fields = MechanismSnapshot::default().fields();
        assert!(fields.iter().any(|(n, _)| *n == "held_now"));
    }
}
