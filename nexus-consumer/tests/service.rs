//! The consumer service against real Tansu and redis-server: events emitted
//! through `nexus-events` lead to Redis blocks, webhook alerts and spike flags.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use nexus_consumer::blocklist::{BLOCKLIST_CHANNEL, BLOCKLIST_INDEX_KEY, blocked_key};
use nexus_consumer::{ConsumerService, ServiceConfig, Stats};
use nexus_events::kafka::ProducerConfig;
use nexus_events::{Emitter, EmitterConfig, Event, KafkaSink, RequestCompleted};
use nexus_testkit::{HttpUpstream, KafkaBroker, RedisServer};
use tokio::sync::oneshot;
use tokio::time::{sleep, timeout};

async fn wait_for(stats: &Stats, counter: fn(&Stats) -> u64, want: u64, within: Duration) {
    timeout(within, async {
        while counter(stats) < want {
            sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("counter stayed at {} (want {want})", counter(stats)));
}

/// Waits until the reported lag is `want`; panics with the last value.
async fn wait_for_lag(stats: &Stats, want: Option<u64>, within: Duration) {
    timeout(within, async {
        while stats.lag() != want {
            sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("lag stayed at {:?} (want {want:?})", stats.lag()));
}

struct Running {
    stats: Arc<Stats>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start_service(config: ServiceConfig) -> Running {
    let service = ConsumerService::new(config).unwrap();
    let stats = service.stats();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        service
            .run(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running { stats, stop, task }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        timeout(Duration::from_secs(15), self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn completed(latency_ms: f64) -> Event {
    Event::request_completed(
        RequestCompleted {
            method: "GET".into(),
            url: "/api/products".into(),
            status_code: 200,
            latency_ms,
            client_id: "gateway-client".into(),
        },
        None,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_the_loop_blocks_in_redis_alerts_and_flags_spikes() {
    let kafka = KafkaBroker::start().await.unwrap();
    let redis = RedisServer::start().await.unwrap();
    let hook = HttpUpstream::builder()
        .json(200, "{}")
        .start()
        .await
        .unwrap();

    let mut config = ServiceConfig::new(&kafka.bootstrap(), &redis.url());
    config.group_id = "nexus-consumer-test".into();
    config.session_timeout_ms = 6_000;
    config.block.block_ms = 60_000;
    config.alerts.webhook_url = Some(format!("{}/alerts", hook.url()));
    let running = start_service(config);

    // Subscribe before anything is blocked, as a gateway would.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(BLOCKLIST_CHANNEL).await.unwrap();
    let mut messages = pubsub.into_on_message();

    let sink = KafkaSink::new(ProducerConfig::new(&kafka.bootstrap())).unwrap();
    let (emitter, task) = Emitter::spawn(sink, EmitterConfig::default()).unwrap();

    // Four hits: not yet blocked; a different IP's hits do not add up.
    for i in 0..4 {
        emitter.emit(Event::rate_limit_hit(
            "10.9.8.7",
            "GET",
            "/api/hello",
            Some(format!("r{i}")),
        ));
        emitter.emit(Event::rate_limit_hit("10.9.8.6", "GET", "/api/hello", None));
    }
    wait_for(
        &running.stats,
        |s| Stats::get(&s.rate_limit_hits),
        8,
        Duration::from_secs(60),
    )
    .await;
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(blocked_key("10.9.8.7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "blocked before the threshold");

    // The fifth hit blocks it, in Redis, with an expiry, announced on the channel.
    emitter.emit(Event::rate_limit_hit(
        "10.9.8.7",
        "GET",
        "/api/hello",
        Some("r5".into()),
    ));
    wait_for(
        &running.stats,
        |s| Stats::get(&s.ips_blocked),
        1,
        Duration::from_secs(20),
    )
    .await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg(blocked_key("10.9.8.7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 50_000 && pttl <= 60_000, "pttl {pttl}");
    let value: String = redis::cmd("GET")
        .arg(blocked_key("10.9.8.7"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&value).unwrap();
    assert_eq!(value["ip"], "10.9.8.7");
    assert_eq!(value["hits"], 5);
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(BLOCKLIST_INDEX_KEY)
        .arg("10.9.8.7")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(score.map(|s| s as u64), value["expiresAt"].as_u64());
    let msg = timeout(Duration::from_secs(5), futures_next(&mut messages))
        .await
        .unwrap();
    assert_eq!(msg, format!("block 10.9.8.7 {}", value["expiresAt"]));
    let other: bool = redis::cmd("EXISTS")
        .arg(blocked_key("10.9.8.6"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!other);

    // Circuit opened: alert counted and posted to the webhook.
    emitter.emit(Event::circuit_opened(
        "http://127.0.0.1:3002",
        "GET",
        "/api/products",
        Some("c1".into()),
    ));
    wait_for(
        &running.stats,
        |s| Stats::get(&s.circuit_alerts),
        1,
        Duration::from_secs(20),
    )
    .await;
    timeout(Duration::from_secs(5), async {
        while hook.requests() == 0 {
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let posted = hook.last_request().unwrap();
    assert_eq!(posted.uri.path(), "/alerts");
    let body: serde_json::Value = serde_json::from_slice(&posted.body).unwrap();
    assert_eq!(body["upstream"], "http://127.0.0.1:3002");
    assert_eq!(body["correlationId"], "c1");

    // Latency: 50 normal requests, then one at 312 ms (seed example) is a spike.
    for _ in 0..50 {
        emitter.emit(completed(5.1));
    }
    wait_for(
        &running.stats,
        |s| Stats::get(&s.requests_completed),
        50,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(Stats::get(&running.stats.latency_spikes), 0);
    emitter.emit(completed(312.0));
    wait_for(
        &running.stats,
        |s| Stats::get(&s.latency_spikes),
        1,
        Duration::from_secs(20),
    )
    .await;

    task.shutdown(Duration::from_secs(5)).await;
    running.shutdown().await;
}

async fn futures_next(s: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> String {
    use futures_util::StreamExt;
    let msg = s.next().await.unwrap();
    msg.get_payload::<String>().unwrap()
}

/// Redis down when the threshold is reached: the consumer does not commit,
/// rewinds, and writes the block once Redis is back (at-least-once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_decided_during_a_redis_outage_is_written_when_redis_returns() {
    let kafka = KafkaBroker::start().await.unwrap();
    let redis = RedisServer::start().await.unwrap();
    let mut config = ServiceConfig::new(&kafka.bootstrap(), &redis.url());
    config.group_id = "nexus-consumer-outage".into();
    config.session_timeout_ms = 6_000;
    let running = start_service(config);
    let sink = KafkaSink::new(ProducerConfig::new(&kafka.bootstrap())).unwrap();
    let (emitter, task) = Emitter::spawn(sink, EmitterConfig::default()).unwrap();

    // Make sure the service has joined and handles events before Redis goes away.
    emitter.emit(Event::rate_limit_hit("10.1.1.1", "GET", "/warm", None));
    wait_for(
        &running.stats,
        |s| Stats::get(&s.rate_limit_hits),
        1,
        Duration::from_secs(60),
    )
    .await;

    redis.stop();
    for _ in 0..5 {
        emitter.emit(Event::rate_limit_hit("10.2.2.2", "GET", "/x", None));
    }
    wait_for(
        &running.stats,
        |s| Stats::get(&s.rate_limit_hits),
        6,
        Duration::from_secs(20),
    )
    .await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(Stats::get(&running.stats.ips_blocked), 0, "Redis is down");
    // The record that decided the block was read but not handled: rewound
    // to, it is the lag (all others were handled), and it stays while Redis
    // is down.
    wait_for_lag(&running.stats, Some(1), Duration::from_secs(5)).await;
    sleep(Duration::from_millis(1500)).await;
    assert_eq!(running.stats.lag(), Some(1));

    redis.restart().await.unwrap();
    wait_for(
        &running.stats,
        |s| Stats::get(&s.ips_blocked),
        1,
        Duration::from_secs(30),
    )
    .await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(blocked_key("10.2.2.2"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(exists, "block written after Redis returned");
    wait_for_lag(&running.stats, Some(0), Duration::from_secs(10)).await;
    task.shutdown(Duration::from_secs(5)).await;
    running.shutdown().await;
}
