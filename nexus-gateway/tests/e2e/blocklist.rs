//! The Redis-fed blocklist against a real redis-server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use http::StatusCode;
use nexus_gateway::{BLOCKLIST_CHANNEL, BLOCKLIST_INDEX_KEY};
use nexus_testkit::{HttpUpstream, RedisServer};

use crate::harness::{PROXY, TestGateway, eventually};

fn in_a_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000
}

#[tokio::test]
async fn blocks_from_redis_take_effect_within_a_second() -> Result<()> {
    let redis = RedisServer::start().await?;
    let client = redis::Client::open(redis.url())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    // A block present before the gateway starts is loaded from the index.
    let _: () = redis::cmd("ZADD")
        .arg(BLOCKLIST_INDEX_KEY)
        .arg(in_a_minute())
        .arg("198.51.100.9")
        .query_async(&mut con)
        .await?;

    let up = HttpUpstream::start().await?;
    let extra = format!(
        "{PROXY}blocklist:\n  redis_url: {}\n  refresh_ms: 60000\n",
        redis.url()
    );
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    assert_eq!(gw.get("/health", None).await?.status, StatusCode::OK);

    // The consumer's write: index entry + announcement on the channel.
    let until = in_a_minute();
    let _: () = redis::cmd("ZADD")
        .arg(BLOCKLIST_INDEX_KEY)
        .arg(until)
        .arg("127.0.0.1")
        .query_async(&mut con)
        .await?;
    let published = std::time::Instant::now();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(BLOCKLIST_CHANNEL)
        .arg(format!("block 127.0.0.1 {until}"))
        .query_async(&mut con)
        .await?;
    let blocked = eventually(Duration::from_secs(2), || async {
        gw.get("/health", None)
            .await
            .map(|r| r.status == StatusCode::FORBIDDEN)
            .unwrap_or(false)
    })
    .await;
    assert!(blocked, "the block reached the gateway");
    assert!(
        published.elapsed() < Duration::from_secs(1),
        "within a second: {:?}",
        published.elapsed()
    );
    let r = gw.get("/api/products", None).await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "checked before auth");
    assert_eq!(up.requests(), 0);

    // Redis going away keeps the last view.
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.get("/health", None).await?.status, StatusCode::FORBIDDEN);
    Ok(())
}
