//! KafkaBroker (Tansu) checked with confluent-kafka, a client that is not ours.
#![allow(clippy::unwrap_used)]

use std::{net::TcpStream, time::Duration};

use nexus_testkit::{Error, KafkaBroker};

/// Bound on a consume: a group join alone takes about 3 s on Tansu.
const CONSUME: Duration = Duration::from_secs(30);

#[tokio::test]
async fn round_trips_keyed_messages_through_an_independent_client() {
    let kafka = KafkaBroker::start().await.unwrap();
    assert_eq!(kafka.bootstrap(), format!("127.0.0.1:{}", kafka.port()));
    let client = kafka.client();
    let delivered = client
        .produce("interop", &[("k0", "v0"), ("k1", "v1"), ("k2", "v2")])
        .await
        .unwrap();
    assert_eq!(delivered.len(), 3);
    assert!(
        delivered
            .iter()
            .all(|d| d.topic == "interop" && d.offset >= 0)
    );

    let mut consumed = client.consume("interop", 3, CONSUME).await.unwrap();
    consumed.sort_by(|a, b| a.key.cmp(&b.key));
    let pairs: Vec<_> = consumed
        .iter()
        .map(|m| (m.key.clone().unwrap(), m.value.clone().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [("k0", "v0"), ("k1", "v1"), ("k2", "v2")].map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    // Same key, same partition as reported at delivery.
    for message in &consumed {
        let sent = delivered.iter().find(|d| d.key == message.key).unwrap();
        assert_eq!(
            (sent.partition, sent.offset),
            (message.partition, message.offset)
        );
    }
}

#[tokio::test]
async fn headers_survive_the_round_trip() {
    let kafka = KafkaBroker::start().await.unwrap();
    let client = kafka.client();
    client.create_topic("with-headers", 1).await.unwrap();
    client
        .produce_with_headers(
            "with-headers",
            &[(
                "k",
                r#"{"type":"order.created"}"#,
                &[("event-version", "1")],
            )],
        )
        .await
        .unwrap();
    let consumed = client.consume("with-headers", 1, CONSUME).await.unwrap();
    assert_eq!(consumed[0].partition, 0);
    assert_eq!(
        consumed[0].value.as_deref(),
        Some(r#"{"type":"order.created"}"#)
    );
    assert_eq!(
        consumed[0].headers.get("event-version"),
        Some(&Some("1".to_owned()))
    );
}

#[tokio::test]
async fn restarts_on_the_same_port_empty() {
    let kafka = KafkaBroker::start().await.unwrap();
    let addr = kafka.addr();
    let client = kafka.client();
    client.create_topic("t", 1).await.unwrap();
    let first = client
        .produce("t", &[("a", "1"), ("b", "2")])
        .await
        .unwrap();
    assert_eq!(first.iter().map(|d| d.offset).collect::<Vec<_>>(), [0, 1]);

    kafka.stop();
    assert!(!kafka.is_running());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());

    kafka.restart().await.unwrap();
    assert_eq!(kafka.addr(), addr);
    client.create_topic("t", 1).await.unwrap();
    let again = client.produce("t", &[("c", "3")]).await.unwrap();
    assert_eq!(
        again[0].offset, 0,
        "memory storage starts empty after a restart"
    );
}

#[tokio::test]
async fn consuming_more_than_exists_fails_in_bounded_time() {
    let kafka = KafkaBroker::start().await.unwrap();
    let client = kafka.client();
    client.produce("short", &[("k", "v")]).await.unwrap();
    let started = std::time::Instant::now();
    let err = client
        .consume("short", 2, Duration::from_secs(8))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(25));
    match err {
        Error::Client { stderr, .. } => assert!(stderr.contains("consumed 1 of 2"), "{stderr}"),
        other => panic!("expected a client error, got {other}"),
    }
}

#[tokio::test]
async fn drop_kills_the_broker() {
    let kafka = KafkaBroker::start().await.unwrap();
    let pid = kafka.pid().unwrap();
    let dir = kafka.dir().to_path_buf();
    drop(kafka);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_broker_that_cannot_start_reports_its_log() {
    let err = KafkaBroker::builder()
        .storage("nosuchengine://x")
        .start()
        .await
        .unwrap_err();
    match err {
        Error::Exited { log, .. } | Error::NotReady { log, .. } => {
            assert!(!log.trim().is_empty(), "empty log")
        }
        other => panic!("expected Exited, got {other}"),
    }
}

#[tokio::test]
async fn a_taken_fixed_port_is_not_mistaken_for_our_broker() {
    let first = KafkaBroker::start().await.unwrap();
    let err = KafkaBroker::builder()
        .port(first.port())
        .startup_timeout(Duration::from_secs(5))
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Exited { .. } | Error::NotReady { .. }),
        "{err}"
    );
}
