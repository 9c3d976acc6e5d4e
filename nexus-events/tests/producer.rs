//! The producer against a real Kafka-protocol broker (Tansu), read back by an
//! independent client (confluent-kafka / librdkafka).
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use nexus_events::kafka::{Acks, ProducerConfig, partition_for_key};
use nexus_events::{Emitter, EmitterConfig, Event, EventKind, KafkaSink, TOPIC_RATE_LIMIT_HIT};
use nexus_testkit::KafkaBroker;

fn producer_config(bootstrap: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(bootstrap);
    c.acks = Acks::All;
    c
}

/// 100,000 keyed events through the Emitter, read back one by one by
/// confluent-kafka: count, keys, murmur2 partitions and payloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_keyed_events_read_back_by_confluent_kafka() {
    const N: usize = 100_000;
    let kafka = KafkaBroker::start().await.unwrap();
    let sink = KafkaSink::new(producer_config(&kafka.bootstrap())).unwrap();
    let config = EmitterConfig {
        capacity: N, // the test wants every event, so the queue holds them all
        ..EmitterConfig::default()
    };
    let (emitter, task) = Emitter::spawn(sink, config).unwrap();
    for i in 0..N {
        emitter.emit(Event::rate_limit_hit(
            format!("10.0.{}.{}", i / 256 % 256, i % 256),
            "GET",
            format!("/api/item/{i}"),
            Some(format!("req-{i}")),
        ));
    }
    let stats = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let s = emitter.stats();
            if s.sent + s.failed >= N as u64 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("producer did not finish within 120 s");
    assert_eq!(stats.emitted, N as u64);
    assert_eq!(stats.sent, N as u64, "{stats:?}");
    assert_eq!(stats.dropped(), 0);
    task.shutdown(Duration::from_secs(5)).await;

    let read = kafka
        .client()
        .consume(TOPIC_RATE_LIMIT_HIT, N, Duration::from_secs(180))
        .await
        .unwrap();
    assert_eq!(read.len(), N);
    let partitions = read.iter().map(|m| m.partition).max().unwrap() as u32 + 1;
    assert_eq!(partitions, 3, "topic created with the default 3 partitions");
    let mut keys = HashSet::new();
    for m in &read {
        let key = m.key.as_deref().unwrap();
        assert!(keys.insert(key.to_owned()), "duplicate key {key}");
        assert_eq!(
            m.partition as u32,
            partition_for_key(key.as_bytes(), partitions),
            "key {key} is not on its murmur2 partition"
        );
        let i: usize = key.strip_prefix("req-").unwrap().parse().unwrap();
        let event = Event::from_record(&m.topic, m.value.as_deref().unwrap().as_bytes()).unwrap();
        assert_eq!(event.correlation_id.as_deref(), Some(key));
        let EventKind::RateLimitHit(hit) = event.kind else {
            panic!("wrong kind")
        };
        assert_eq!(hit.url, format!("/api/item/{i}"));
        assert_eq!(hit.ip, format!("10.0.{}.{}", i / 256 % 256, i % 256));
    }
    assert_eq!(keys.len(), N);
}

/// librdkafka's Java-compatible partitioner (`murmur2_random`) puts keys on
/// the partitions `partition_for_key` predicts, so our keyed events and other
/// clients' keyed events for the same key meet on one partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn murmur2_partitions_agree_with_librdkafka() {
    let kafka = KafkaBroker::start().await.unwrap();
    kafka.client().create_topic("placement", 7).await.unwrap();
    let script = r#"
import json, sys
from confluent_kafka import Producer
p = Producer({"bootstrap.servers": sys.argv[1], "partitioner": "murmur2_random"})
out = []
def done(err, msg):
    if err is None:
        out.append({"key": msg.key().decode(), "partition": msg.partition()})
for i in range(500):
    p.produce("placement", key=f"user-{i}".encode(), value=b"x", on_delivery=done)
p.flush(30)
print(json.dumps(out))
"#;
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(kafka.bootstrap())
            .output(),
    )
    .await
    .unwrap()
    .expect("python3 with confluent-kafka (bash scripts/setup.sh)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let placed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(placed.len(), 500);
    let mut used = HashSet::new();
    for p in placed {
        let key = p["key"].as_str().unwrap();
        let partition = p["partition"].as_u64().unwrap() as u32;
        assert_eq!(partition, partition_for_key(key.as_bytes(), 7), "key {key}");
        used.insert(partition);
    }
    assert_eq!(used.len(), 7, "500 keys spread over every partition");
}
