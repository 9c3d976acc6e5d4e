//! Upstream failures: Redis down, restarted under load, unresponsive, or gone
//! under a pinned session. Every command gets one reply; nothing hangs.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Conn, ProxyHandle, WAIT, cmd};
use nexus_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_under_load_gives_errors_or_answers_never_hangs() -> Result<()> {
    let redis = Arc::new(RedisServer::start().await?);
    let proxy = ProxyHandle::start(&redis.url(), |b| b.pool_size(2)).await?;
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    for i in 0..20u32 {
        let (addr, ok, failed, stop) = (proxy.addr, ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            let key = format!("k{i}");
            while !stop.is_cancelled() {
                let mut script = cmd(&[b"SET", key.as_bytes(), b"v"]);
                script.extend(cmd(&[b"GET", key.as_bytes()]));
                c.send(&script).await?;
                // Every command gets exactly one reply: a real one or an upstream error.
                let got = String::from_utf8(c.read_frames(2).await?)?;
                let valid = [
                    "+OK\r\n$1\r\nv\r\n",
                    "-ERR upstream",
                    "+OK\r\n-ERR upstream",
                ];
                ensure!(
                    valid.iter().any(|v| got.starts_with(v)),
                    "unexpected: {got:?}"
                );
                if got.contains("-ERR") {
                    ensure!(
                        got.contains("upstream connection lost")
                            || got.contains("upstream unavailable"),
                        "{got:?}"
                    );
                    failed.fetch_add(1, Ordering::Relaxed);
                } else {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during_outage = failed.load(Ordering::Relaxed);
    redis.restart().await?;
    // After the restart, the pool reconnects and answers resume.
    let ok_at_restart = ok.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + WAIT;
    while ok.load(Ordering::Relaxed) < ok_at_restart + 200 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no recovery after restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    for t in tasks {
        tokio::time::timeout(WAIT, t)
            .await
            .context("client hung")???;
    }
    assert!(during_outage > 0, "the outage must be reported as errors");
    assert!(proxy.metrics.snapshot().upstream_connects >= 2);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_answers_errors_quickly() -> Result<()> {
    let redis = RedisServer::start().await?;
    let url = redis.url();
    redis.stop();
    let proxy = ProxyHandle::start(&url, |b| b).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    for _ in 0..3 {
        let reply = String::from_utf8(c.call(&[b"GET", b"k"]).await?)?;
        assert!(
            reply.starts_with("-ERR upstream unavailable: "),
            "{reply:?}"
        );
    }
    // A pinning command cannot be honoured: error, then the connection closes.
    c.send(&cmd(&[b"MULTI"])).await?;
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(rest.starts_with("-ERR upstream unavailable"), "{rest:?}");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_client_sees_error_when_redis_dies() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    c.send(&cmd(&[b"BLPOP", b"q", b"0"])).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    redis.stop();
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert_eq!(rest, "-ERR upstream connection lost\r\n");
    proxy.stop().await
}

/// A script that keeps Redis busy (unresponsive to everyone) for 1.5 s.
const BUSY_1500MS: &[u8] =
    b"local t = redis.call('TIME') while true do local n = redis.call('TIME') \
    if (n[1] - t[1]) * 1000000 + n[2] - t[2] > 1500000 then break end end return 'slow'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresponsive_redis_times_out_instead_of_hanging() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.pool_size(1).upstream_timeout(Duration::from_millis(300))
    })
    .await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"SET", b"k", b"v"]).await?, b"+OK\r\n");
    // Redis stops answering for 1.5 s (it is busy, the socket stays open).
    let mut sleeper = Conn::connect(redis.addr()).await?;
    sleeper.send(&cmd(&[b"EVAL", BUSY_1500MS, b"0"])).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    let mut script = cmd(&[b"GET", b"k"]);
    script.extend(cmd(&[b"GET", b"k"]));
    c.send(&script).await?;
    assert_eq!(
        c.read_frames(2).await?,
        b"-ERR upstream timeout\r\n-ERR upstream timeout\r\n"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sleeper.read_frames(1).await?, b"$4\r\nslow\r\n");
    // Once Redis answers again, the pool reconnects.
    assert_eq!(c.call(&[b"GET", b"k"]).await?, b"$1\r\nv\r\n");
    proxy.stop().await
}

/// A batch the upstream writer has taken from the queue but not yet written
/// (waiting for room in a full window) when the connection fails is answered
/// `-ERR` and counted in `upstream_failed_commands` like every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_waiting_to_be_written_when_the_connection_fails_is_counted() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.pool_size(1)
            .upstream_queue(1)
            .upstream_timeout(Duration::from_millis(300))
    })
    .await?;
    let mut a = Conn::connect(proxy.addr).await?;
    let mut b = Conn::connect(proxy.addr).await?;
    assert_eq!(a.call(&[b"SET", b"k", b"v"]).await?, b"+OK\r\n");
    let mut sleeper = Conn::connect(redis.addr()).await?;
    sleeper.send(&cmd(&[b"EVAL", BUSY_1500MS, b"0"])).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A's GET fills the window of one batch; B's pipelined pair is taken
    // from the queue and waits for room until the connection times out.
    a.send(&cmd(&[b"GET", b"k"])).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut pair = cmd(&[b"GET", b"k"]);
    pair.extend(cmd(&[b"GET", b"k"]));
    b.send(&pair).await?;
    assert_eq!(a.read_frames(1).await?, b"-ERR upstream timeout\r\n");
    let replies = b.read_frames(2).await?;
    ensure!(
        replies.starts_with(b"-ERR") && replies.iter().filter(|&&c| c == b'-').count() == 2,
        "{}",
        common::show(&replies)
    );
    assert_eq!(sleeper.read_frames(1).await?, b"$4\r\nslow\r\n");
    let stats = String::from_utf8(a.call(&[b"NEXUS.STATS"]).await?)?;
    ensure!(
        stats.contains("$24\r\nupstream_failed_commands\r\n:3\r\n"),
        "{stats}"
    );
    proxy.stop().await
}
