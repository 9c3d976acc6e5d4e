//! The group consumer against a real Kafka-protocol broker (Tansu), fed by
//! an independent client (confluent-kafka) and by our producer.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use nexus_events::kafka::{
    Acks, ConsumedRecord, ConsumerConfig, GroupConsumer, OutRecord, Producer, ProducerConfig,
};
use nexus_testkit::KafkaBroker;
use tokio::time::{Instant, timeout};

fn consumer_config(bootstrap: &str, group: &str, topic: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::new(bootstrap, group, &[topic]);
    // Tansu completes a join after about half the session timeout.
    c.session_timeout = Duration::from_secs(6);
    c.rebalance_timeout = Duration::from_secs(6);
    c.heartbeat_interval = Duration::from_millis(500);
    c
}

async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let mut config = ProducerConfig::new(bootstrap);
    config.acks = Acks::All;
    let mut producer = Producer::new(config).unwrap();
    let records: Vec<OutRecord> = range
        .map(|i| {
            OutRecord::new(
                topic.to_owned(),
                Some(Bytes::from(format!("k{i}"))),
                Bytes::from(format!("v{i}")),
            )
        })
        .collect();
    let report = producer.send(&records).await;
    assert_eq!(report.sent, records.len(), "{:?}", report.last_error);
}

/// Polls until `want` records arrived (committing after each poll) or the deadline.
async fn drain(
    c: &mut GroupConsumer,
    want: usize,
    within: Duration,
    commit: bool,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < want && Instant::now() < deadline {
        let batch = timeout(Duration::from_secs(20), c.poll())
            .await
            .unwrap()
            .unwrap();
        if commit && !batch.is_empty() {
            c.commit(&batch).await.unwrap();
        }
        got.extend(batch);
    }
    got
}

fn values(records: &[ConsumedRecord]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_what_confluent_kafka_produced() {
    let kafka = KafkaBroker::start().await.unwrap();
    let client = kafka.client();
    client.create_topic("interop", 3).await.unwrap();
    let messages: Vec<(String, String)> = (0..300)
        .map(|i| (format!("key-{i}"), format!("value-{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = messages
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let delivered = client.produce("interop", &refs).await.unwrap();
    assert_eq!(delivered.len(), 300);

    let mut c = GroupConsumer::join(consumer_config(&kafka.bootstrap(), "g-interop", "interop"))
        .await
        .unwrap();
    assert_eq!(c.assignment().len(), 3, "single member owns all partitions");
    let got = drain(&mut c, 300, Duration::from_secs(30), true).await;
    assert_eq!(got.len(), 300, "no duplicates, no loss");
    let by_key: BTreeMap<String, String> = got
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap(),
                String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = messages.into_iter().collect();
    assert_eq!(by_key, want);
    // Partitions and offsets are the ones confluent-kafka was told.
    let placed: BTreeSet<(String, i32, i64)> = delivered
        .iter()
        .map(|d| (d.key.clone().unwrap(), d.partition, d.offset))
        .collect();
    let seen: BTreeSet<(String, i32, i64)> = got
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap(),
                r.partition,
                r.offset,
            )
        })
        .collect();
    assert_eq!(seen, placed);
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_consumer_resumes_from_committed_offsets() {
    let kafka = KafkaBroker::start().await.unwrap();
    let bootstrap = kafka.bootstrap();
    produce(&bootstrap, "resume", 0..200).await;

    // First life: handle and commit everything produced so far, then stop.
    let mut first = GroupConsumer::join(consumer_config(&bootstrap, "g-resume", "resume"))
        .await
        .unwrap();
    let before = drain(&mut first, 200, Duration::from_secs(30), true).await;
    assert_eq!(values(&before).len(), 200);
    assert_eq!(before.len(), 200);
    first.close().await.unwrap();

    // While it is down, more events arrive.
    produce(&bootstrap, "resume", 200..300).await;

    // Second life: exactly the new ones, none of the committed ones.
    let mut second = GroupConsumer::join(consumer_config(&bootstrap, "g-resume", "resume"))
        .await
        .unwrap();
    let after = drain(&mut second, 100, Duration::from_secs(30), true).await;
    // Give a redelivery bug a chance to show up.
    let extra = drain(&mut second, usize::MAX, Duration::from_secs(1), true).await;
    assert!(extra.is_empty(), "redelivered: {:?}", values(&extra));
    let want: BTreeSet<String> = (200..300).map(|i| format!("v{i}")).collect();
    assert_eq!(values(&after), want);
    assert_eq!(after.len(), 100);
    second.close().await.unwrap();
}

/// A consumer running in its own task, reporting records and assignments.
struct Member {
    task: tokio::task::JoinHandle<()>,
    records: tokio::sync::mpsc::UnboundedReceiver<ConsumedRecord>,
    assignment: tokio::sync::watch::Receiver<Vec<(String, i32)>>,
}

fn spawn_member(config: ConsumerConfig) -> Member {
    let (tx, records) = tokio::sync::mpsc::unbounded_channel();
    let (atx, assignment) = tokio::sync::watch::channel(Vec::new());
    let task = tokio::spawn(async move {
        let mut c = GroupConsumer::join(config).await.unwrap();
        loop {
            atx.send_replace(c.assignment().to_vec());
            let batch = match c.poll().await {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("poll: {e}");
                    continue;
                }
            };
            atx.send_replace(c.assignment().to_vec());
            if !batch.is_empty()
                && let Err(e) = c.commit(&batch).await
            {
                eprintln!("commit: {e}");
            }
            for r in batch {
                let _ = tx.send(r);
            }
        }
    });
    Member {
        task,
        records,
        assignment,
    }
}

async fn wait_for_assignment(
    m: &mut Member,
    pred: impl Fn(&[(String, i32)]) -> bool,
    within: Duration,
) -> Vec<(String, i32)> {
    timeout(within, async {
        loop {
            let now = m.assignment.borrow_and_update().clone();
            if pred(&now) {
                return now;
            }
            m.assignment.changed().await.unwrap();
        }
    })
    .await
    .expect("assignment not reached in time")
}

fn take_values(m: &mut Member) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    while let Ok(r) = m.records.try_recv() {
        out.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_split_partitions_and_the_survivor_takes_over() {
    let kafka = KafkaBroker::start().await.unwrap();
    let bootstrap = kafka.bootstrap();
    produce(&bootstrap, "split", 0..300).await;
    let config = consumer_config(&bootstrap, "g-split", "split");

    let mut a = spawn_member(config.clone());
    wait_for_assignment(&mut a, |p| p.len() == 3, Duration::from_secs(30)).await;
    let mut b = spawn_member(config);
    let pa = wait_for_assignment(
        &mut a,
        |p| !p.is_empty() && p.len() < 3,
        Duration::from_secs(30),
    )
    .await;
    let pb = wait_for_assignment(&mut b, |p| !p.is_empty(), Duration::from_secs(30)).await;
    let union: BTreeSet<_> = pa.iter().chain(&pb).cloned().collect();
    assert_eq!(union.len(), 3, "a={pa:?} b={pb:?}");
    assert_eq!(pa.len() + pb.len(), 3, "partitions are split, not shared");

    // Everything produced before the split was read by one of them (at least once).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut seen = take_values(&mut a);
    seen.extend(take_values(&mut b));
    let first: BTreeSet<String> = (0..300).map(|i| format!("v{i}")).collect();
    assert!(
        first.is_subset(&seen),
        "missing {:?}",
        first.difference(&seen).take(5).collect::<Vec<_>>()
    );

    // Kill b: no LeaveGroup, its heartbeats stop; a takes over after the session timeout.
    b.task.abort();
    produce(&bootstrap, "split", 300..600).await;
    wait_for_assignment(&mut a, |p| p.len() == 3, Duration::from_secs(40)).await;
    let want: BTreeSet<String> = (300..600).map(|i| format!("v{i}")).collect();
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&got) && Instant::now() < deadline {
        if let Ok(Some(r)) = timeout(Duration::from_millis(500), a.records.recv()).await {
            got.insert(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    assert!(
        want.is_subset(&got),
        "survivor missed {} records",
        want.difference(&got).count()
    );
    a.task.abort();
}

/// `lag()` is (high watermark - read position) summed over the assigned
/// partitions, as of each partition's last fetch: the high watermark comes
/// from the broker's fetch answer, the position from what `poll` returned
/// (or `seek`). After reading k of N records it is exactly N - k, however
/// many records each fetch returns; records produced after the last fetch
/// are not counted until the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_produced_minus_read_as_of_the_last_fetch() {
    const N: usize = 40;
    const K: usize = 15;
    let kafka = KafkaBroker::start().await.unwrap();
    let bootstrap = kafka.bootstrap();
    kafka.client().create_topic("lag", 1).await.unwrap();
    // In several produce requests, so that the log holds several batches.
    for start in (0..N).step_by(4) {
        produce(&bootstrap, "lag", start..start + 4).await;
    }

    let mut c = timeout(
        Duration::from_secs(30),
        GroupConsumer::join(consumer_config(&bootstrap, "g-lag", "lag")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(c.lag(), None, "no fetch yet, no high watermark");

    // Every fetch sees the high watermark N; lag = N - records read so far.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = 0;
    while read < N && Instant::now() < deadline {
        let batch = timeout(Duration::from_secs(20), c.poll())
            .await
            .unwrap()
            .unwrap();
        read += batch.len();
        if !batch.is_empty() {
            assert_eq!(c.lag(), Some((N - read) as u64), "after reading {read}");
        }
    }
    assert_eq!(read, N);
    assert_eq!(c.lag(), Some(0));

    // Back to "K of N read": the position moves, the broker's watermark stays.
    c.seek("lag", 0, K as i64);
    assert_eq!(c.lag(), Some((N - K) as u64));
    let again = timeout(Duration::from_secs(20), c.poll())
        .await
        .unwrap()
        .unwrap();
    assert!(!again.is_empty());
    assert_eq!(again[0].offset, K as i64);
    assert_eq!(c.lag(), Some((N - K - again.len()) as u64));
    let rest = drain(&mut c, N - K - again.len(), Duration::from_secs(30), false).await;
    assert_eq!(K + again.len() + rest.len(), N);
    assert_eq!(c.lag(), Some(0));

    // Produced after the last fetch: invisible until the next fetch.
    produce(&bootstrap, "lag", N..N + 3).await;
    assert_eq!(c.lag(), Some(0), "no fetch since: the watermark is stale");
    let late = drain(&mut c, 3, Duration::from_secs(30), false).await;
    assert_eq!(late.len(), 3);
    assert_eq!(c.lag(), Some(0));
    c.seek("lag", 0, 0);
    assert_eq!(
        c.lag(),
        Some((N + 3) as u64),
        "watermark N + 3 from the last fetch"
    );
    c.close().await.unwrap();
}
