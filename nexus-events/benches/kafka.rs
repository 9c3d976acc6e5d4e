//! Producer throughput and end-to-end latency (emit -> group consumer
//! handler) against a real local broker (Tansu, memory storage), started by
//! `nexus-testkit`. Prints numbers; no criterion statistics (one broker run
//! is the unit of measurement).
//!
//! ```text
//! cargo bench -p nexus-events --bench kafka
//! NEXUS_BENCH_EVENTS=500000 cargo bench -p nexus-events --bench kafka
//! ```

use std::time::{Duration, Instant, SystemTime};

use nexus_events::kafka::{ConsumerConfig, GroupConsumer, ProducerConfig};
use nexus_events::{
    Emitter, EmitterConfig, Event, KafkaSink, RequestCompleted, TOPIC_REQUEST_COMPLETED,
};
use nexus_testkit::KafkaBroker;

fn event(i: usize) -> Event {
    Event::request_completed(
        RequestCompleted {
            method: "GET".into(),
            url: "/api/products?page=2".into(),
            status_code: 200,
            latency_ms: 4.2,
            client_id: "gateway-client".into(),
        },
        Some(format!("req-{i}")),
    )
}

async fn throughput(bootstrap: &str, n: usize) {
    let sink = KafkaSink::new(ProducerConfig::new(bootstrap)).expect("sink");
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut config = EmitterConfig {
        capacity: 65_536,
        ..EmitterConfig::default()
    };
    if let Some(b) = env("NEXUS_BENCH_MAX_BATCH") {
        config.max_batch = b as usize;
    }
    if let Some(l) = env("NEXUS_BENCH_LINGER_MS") {
        config.linger = Duration::from_millis(l);
    }
    let (max_batch, linger) = (config.max_batch, config.linger);
    let (emitter, task) = Emitter::spawn(sink, config).expect("emitter");
    // Warm up: metadata, topic creation, connections.
    emitter.emit(event(0));
    while emitter.stats().sent < 1 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let events: Vec<Event> = (0..n).map(event).collect();
    let start = Instant::now();
    for e in events {
        // Offer load as fast as the queue takes it (a real gateway would drop
        // instead; here we want the producer's ceiling, not drops).
        let mut e = Some(e);
        while let Some(ev) = e.take() {
            let before = emitter.stats().dropped_full;
            emitter.emit(ev.clone());
            if emitter.stats().dropped_full > before {
                tokio::task::yield_now().await;
                e = Some(ev);
            }
        }
    }
    while emitter.stats().sent + emitter.stats().failed < n as u64 + 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let stats = task.shutdown(Duration::from_secs(5)).await;
    println!(
        "producer throughput: {n} events in {elapsed:?} = {:.0} events/s (acks=1, linger {linger:?}, max_batch {max_batch}; sent {}, failed {})",
        n as f64 / elapsed.as_secs_f64(),
        stats.sent,
        stats.failed
    );
}

async fn end_to_end(bootstrap: &str, rate_per_s: u64, seconds: u64) {
    let mut cc = ConsumerConfig::new(bootstrap, "bench-e2e", &[TOPIC_REQUEST_COMPLETED]);
    cc.session_timeout = Duration::from_secs(6);
    cc.rebalance_timeout = Duration::from_secs(6);
    cc.heartbeat_interval = Duration::from_millis(500);
    let mut consumer = GroupConsumer::join(cc).await.expect("join");
    // Skip what the throughput run left in the topic.
    loop {
        let b = consumer.poll().await.expect("poll");
        if b.is_empty() {
            break;
        }
        consumer.commit(&b).await.expect("commit");
    }
    let sink = KafkaSink::new(ProducerConfig::new(bootstrap)).expect("sink");
    let (emitter, task) = Emitter::spawn(sink, EmitterConfig::default()).expect("emitter");
    let total = (rate_per_s * seconds) as usize;
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let per_tick = (rate_per_s / 100).max(1) as usize;
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            for _ in 0..per_tick.min(total - sent) {
                emitter.emit(event(10_000_000 + sent));
                sent += 1;
            }
        }
        task.shutdown(Duration::from_secs(5)).await
    });
    let mut latencies = Vec::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds + 30);
    while latencies.len() < total && Instant::now() < deadline {
        let batch = consumer.poll().await.expect("poll");
        let now = SystemTime::now();
        for r in &batch {
            if let Some(Ok(e)) = r.value.as_deref().map(|v| Event::from_record(&r.topic, v)) {
                if let Ok(d) = now.duration_since(e.emitted_at) {
                    latencies.push(d);
                }
            }
        }
        consumer.commit(&batch).await.expect("commit");
    }
    let stats = producer.await.expect("producer");
    consumer.close().await.ok();
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "end-to-end emit -> handler: {} events at {rate_per_s}/s: p50 {:?}  p99 {:?}  max {:?} (emitter: {stats:?})",
        latencies.len(),
        p(0.5),
        p(0.99),
        latencies[latencies.len() - 1]
    );
}

fn main() {
    // Ignore criterion-style flags passed by `cargo bench`.
    let n: usize = std::env::var("NEXUS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let kafka = KafkaBroker::start().await.expect("broker");
        throughput(&kafka.bootstrap(), n).await;
        end_to_end(&kafka.bootstrap(), 2_000, 5).await;
    });
}
