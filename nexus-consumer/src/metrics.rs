//! Prometheus exposition of [`Stats`], read at scrape time.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `nexus_consumer_events_total` | counter | `type` (the three topics) |
//! | `nexus_consumer_records_total` | counter | |
//! | `nexus_consumer_malformed_records_total` | counter | |
//! | `nexus_consumer_handler_errors_total` | counter | |
//! | `nexus_consumer_ips_blocked_total` | counter | |
//! | `nexus_consumer_active_blocks` | gauge | |
//! | `nexus_consumer_alerts_total` | counter | |
//! | `nexus_consumer_latency_spikes_total` | counter | |
//! | `nexus_consumer_commits_total` | counter | |
//! | `nexus_consumer_lag_records` | gauge (only once known) | |
//! | `nexus_consumer_handle_duration_seconds` | histogram | `type` |
//!
//! `nexus_consumer_ips_blocked_total` counts every block ever written;
//! `nexus_consumer_active_blocks` is how many of them have not expired yet.
//!
//! Labels are bounded: `type` takes the three topic names only. With
//! [`register_producer`] the same registry also exposes the event producer's
//! counters (`nexus_events_*`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use nexus_events::{ALL_TOPICS, EmitterStatsHandle};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::Stats;

/// Content type of [`encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A registry exposing `stats` (build it once, encode it per scrape).
pub fn registry(stats: Arc<Stats>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StatsCollector(stats)));
    r
}

/// Adds the event producer's counters (an [`Emitter`](nexus_events::Emitter)
/// in the same process, as in `full_stack`) to `registry`:
/// `nexus_events_emitted_total`, `nexus_events_sent_total`,
/// `nexus_events_dropped_total{reason}` (`queue_full`, `stopped`,
/// `delivery_failed`), `nexus_events_queued`, `nexus_events_queue_capacity`.
pub fn register_producer(registry: &mut Registry, producer: EmitterStatsHandle) {
    registry.register_collector(Box::new(ProducerCollector(producer)));
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
    const_counter(e, name, help, Stats::get(c))
}

fn const_counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = ConstCounter::new(v);
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
            "IP blocks written to Redis after repeated rate-limit hits, since start (see nexus_consumer_active_blocks for those still in force).",
            &s.ips_blocked,
        )?;
        gauge(
            &mut e,
            "nexus_consumer_active_blocks",
            "IP blocks written by this consumer that have not expired yet (over its last 1024 blocks).",
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
                "nexus_consumer_lag_records",
                "Records on the assigned partitions not yet handled: high watermark minus position, as of the last fetch.",
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

#[derive(Debug)]
struct ProducerCollector(EmitterStatsHandle);

impl Collector for ProducerCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.get();
        const_counter(
            &mut e,
            "nexus_events_emitted",
            "Events accepted into the emitter's queue.",
            s.emitted,
        )?;
        const_counter(
            &mut e,
            "nexus_events_sent",
            "Events acknowledged by the destination (Kafka: per acks).",
            s.sent,
        )?;
        {
            let mut family = e.encode_descriptor(
                "nexus_events_dropped",
                "Events lost, by reason.",
                None,
                MetricType::Counter,
            )?;
            for (reason, n) in [
                ("queue_full", s.dropped_full),
                ("stopped", s.dropped_closed),
                ("delivery_failed", s.failed),
            ] {
                ConstCounter::new(n).encode(family.encode_family(&[("reason", reason)])?)?;
            }
        }
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(
            &mut e,
            "nexus_events_queued",
            "Events accepted but not yet delivered.",
            as_i64(s.queued),
        )?;
        gauge(
            &mut e,
            "nexus_events_queue_capacity",
            "Bound of the emitter's queue.",
            as_i64(s.queue_capacity),
        )
    }
}
