//! Prometheus exposition of [`Stats`], read at scrape time.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `nexus_consumer_events_total` | counter | `type` (the three topics) |
//! | `nexus_consumer_records_total` | counter | |
//! | `nexus_consumer_malformed_records_total` | counter | |
//! | `nexus_consumer_handler_errors_total` | counter | |
//! | `nexus_consumer_ips_blocked_total` | counter | |
//! | `nexus_consumer_blocked_ips` | gauge | |
//! | `nexus_consumer_alerts_total` | counter | |
//! | `nexus_consumer_latency_spikes_total` | counter | |
//! | `nexus_consumer_commits_total` | counter | |
//! | `nexus_consumer_lag` | gauge (only once known) | |
//! | `nexus_consumer_handle_duration_seconds` | histogram | `type` |
//!
//! Labels are bounded: `type` takes the three topic names only.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use nexus_events::ALL_TOPICS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::Stats;

/// Content type of [`encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A registry exposing `stats` (build it once, encode it per scrape).
pub fn registry(stats: Arc<Stats>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector(stats)));
    r
}

/// The Prometheus text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::with_capacity(4096);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    c: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let m = ConstCounter::new(Stats::get(c));
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

fn gauge(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: i64,
) -> Result<(), std::fmt::Error> {
    let m = ConstGauge::new(v);
    m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &*self.0;
        {
            let mut family = e.encode_descriptor(
                "nexus_consumer_events",
                "Events handled successfully, by type.",
                None,
                MetricType::Counter,
            )?;
            for (topic, n) in s.by_type() {
                let labels = [("type", topic)];
                ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
            }
        }
        counter(
            &mut e,
            "nexus_consumer_records",
            "Records read from Kafka, valid or not.",
            &s.records,
        )?;
        counter(
            &mut e,
            "nexus_consumer_malformed_records",
            "Records skipped because they were not valid events.",
            &s.malformed,
        )?;
        counter(
            &mut e,
            "nexus_consumer_handler_errors",
            "Handler failures (Redis unavailable); the event is retried.",
            &s.handler_errors,
        )?;
        counter(
            &mut e,
            "nexus_consumer_ips_blocked",
            "IPs blocked in Redis after repeated rate-limit hits.",
            &s.ips_blocked,
        )?;
        gauge(
            &mut e,
            "nexus_consumer_blocked_ips",
            "IP blocks written by this consumer still in force.",
            i64::try_from(s.active_blocks()).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut e,
            "nexus_consumer_alerts",
            "Circuit-opened alerts raised.",
            &s.circuit_alerts,
        )?;
        counter(
            &mut e,
            "nexus_consumer_latency_spikes",
            "Latency spikes flagged in request.completed events.",
            &s.latency_spikes,
        )?;
        counter(
            &mut e,
            "nexus_consumer_commits",
            "Offset commits.",
            &s.commits,
        )?;
        if let Some(lag) = s.lag() {
            gauge(
                &mut e,
                "nexus_consumer_lag",
                "Records on the assigned partitions not yet read (high watermark minus position).",
                i64::try_from(lag).unwrap_or(i64::MAX),
            )?;
        }
        let mut family = e.encode_descriptor(
            "nexus_consumer_handle_duration_seconds",
            "Time to handle one event, by type.",
            None,
            MetricType::Histogram,
        )?;
        for (i, h) in s.durations().iter().enumerate() {
            let labels = [("type", ALL_TOPICS[i])];
            h.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
