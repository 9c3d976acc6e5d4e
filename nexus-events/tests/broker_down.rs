//! A broker outage never reaches the caller: `emit` keeps returning at once
//! while losses are counted, and delivery resumes without a restart.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use nexus_events::kafka::ProducerConfig;
use nexus_events::{Emitter, EmitterConfig, EmitterStats, Event, KafkaSink, TOPIC_CIRCUIT_OPENED};
use nexus_testkit::KafkaBroker;
use tokio::time::{Instant, sleep, timeout};

async fn wait_until(
    emitter: &Emitter,
    within: Duration,
    pred: impl Fn(&EmitterStats) -> bool,
) -> EmitterStats {
    timeout(within, async {
        loop {
            let s = emitter.stats();
            if pred(&s) {
                return s;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("condition not reached: {:?}", emitter.stats()))
}

fn event(tag: &str) -> Event {
    Event::circuit_opened(
        "http://127.0.0.1:3002",
        "GET",
        "/api/products",
        Some(tag.to_owned()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_survives_a_broker_outage_and_recovers_without_restart() {
    let kafka = KafkaBroker::start().await.unwrap();
    let mut config = ProducerConfig::new(&kafka.bootstrap());
    config.client.connect_timeout = Duration::from_millis(500);
    config.client.request_timeout = Duration::from_secs(2);
    config.retries = 2;
    let sink = KafkaSink::new(config).unwrap();
    let (emitter, task) = Emitter::spawn(
        sink,
        EmitterConfig {
            capacity: 1_000,
            ..EmitterConfig::default()
        },
    )
    .unwrap();

    for i in 0..10 {
        emitter.emit(event(&format!("before-{i}")));
    }
    wait_until(&emitter, Duration::from_secs(20), |s| s.sent == 10).await;

    // Outage: the caller never waits, losses are counted.
    kafka.stop();
    let mut slowest = Duration::ZERO;
    for i in 0..5_000 {
        let t = Instant::now();
        emitter.emit(event(&format!("down-{i}")));
        slowest = slowest.max(t.elapsed());
        if i % 100 == 0 {
            sleep(Duration::from_millis(20)).await;
        }
    }
    let down = wait_until(&emitter, Duration::from_secs(30), |s| {
        s.emitted == s.sent + s.failed
    })
    .await;
    println!("during outage: {down:?}, slowest emit {slowest:?}");
    assert_eq!(
        down.sent, 10,
        "nothing can be sent while the broker is down"
    );
    assert_eq!(down.emitted + down.dropped_full, 5_010);
    assert!(
        down.failed + down.dropped_full >= 4_990,
        "losses are counted: {down:?}"
    );

    // Recovery: same emitter, same task, a fresh (empty) broker on the same port.
    kafka.restart().await.unwrap();
    let mut probes = 0;
    timeout(Duration::from_secs(30), async {
        while emitter.stats().sent == down.sent {
            emitter.emit(event(&format!("probe-{probes}")));
            probes += 1;
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("delivery did not resume after the broker returned");
    for i in 0..100 {
        emitter.emit(event(&format!("after-{i}")));
    }
    let after = wait_until(&emitter, Duration::from_secs(20), |s| {
        s.emitted == s.sent + s.failed
    })
    .await;
    let stored = (after.sent - down.sent) as usize;
    assert!(stored >= 100, "{after:?}");
    let read = kafka
        .client()
        .consume(TOPIC_CIRCUIT_OPENED, stored, Duration::from_secs(60))
        .await
        .unwrap();
    let keys: BTreeSet<String> = read.into_iter().filter_map(|m| m.key).collect();
    for i in 0..100 {
        assert!(keys.contains(&format!("after-{i}")), "after-{i} missing");
    }
    task.shutdown(Duration::from_secs(5)).await;
}
