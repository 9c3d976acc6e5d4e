//! The near cache against a real redis-server: hits served without Redis,
//! direct writes on Redis evicting entries through client tracking, a lost
//! tracking link flushing the cache, read-your-writes under concurrent
//! clients, the byte budget, and no near cache without a policy naming one.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::{Conn, ProxyHandle, WAIT, cmd, command_calls, show, stat};
use nexus_cache::policy::Policy;
use nexus_testkit::RedisServer;
use tokio::time::Instant;

const NEAR: &str = "rules:\n  - commands: [GET]\n    keys: 'n:*'\n    near_cache: { ttl: 30s, max_entries: 1000 }\n";

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml_str(yaml).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// Polls `NEXUS.STATS` until `name` satisfies `ok` (bounded by `WAIT`).
async fn wait_stat(c: &mut Conn, name: &str, ok: impl Fn(u64) -> bool) -> Result<u64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = stat(c, name).await?;
        if ok(v) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{name} = {v} after {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts Redis and a proxy with `yaml`, and waits for the tracking link.
async fn setup(yaml: &str) -> Result<(RedisServer, ProxyHandle, Conn)> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(yaml))).await?;
    let mut admin = Conn::connect(proxy.addr).await?;
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    Ok((redis, proxy, admin))
}

/// Reads `key` through the proxy until a read is a near-cache hit.
async fn warm(c: &mut Conn, admin: &mut Conn, key: &[u8]) -> Result<Vec<u8>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let hits = stat(admin, "near_cache_hits").await?;
        let v = c.call(&[b"GET", key]).await?;
        if stat(admin, "near_cache_hits").await? > hits {
            return Ok(v);
        }
        ensure!(Instant::now() < deadline, "never a hit for {}", text(key));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn hits_are_served_without_redis_and_in_order() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"n:1", b"one"]).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(warm(&mut c, &mut admin, b"n:1").await?, bulk("one"));

    let before = command_calls(&mut direct, "get").await?;
    for _ in 0..50 {
        assert_eq!(c.call(&[b"GET", b"n:1"]).await?, bulk("one"));
    }
    assert_eq!(
        command_calls(&mut direct, "get").await?,
        before,
        "hits must not reach Redis"
    );

    // A pipeline mixing hits, a miss, a write and other commands keeps its order.
    let mut pipe = Vec::new();
    for args in [
        &[&b"GET"[..], b"n:1"][..],
        &[b"GET", b"n:missing"],
        &[b"SET", b"n:2", b"two"],
        &[b"GET", b"n:1"],
        &[b"PING"],
        &[b"GET", b"n:2"],
        &[b"GET", b"n:1"],
    ] {
        pipe.extend(cmd(args));
    }
    c.send(&pipe).await?;
    let got = c.read_frames(7).await?;
    let want = [
        bulk("one"),
        b"$-1\r\n".to_vec(),
        b"+OK\r\n".to_vec(),
        bulk("one"),
        b"+PONG\r\n".to_vec(),
        bulk("two"),
        bulk("one"),
    ]
    .concat();
    assert_eq!(got, want, "{}", show(&got));
    proxy.stop().await
}

#[tokio::test]
async fn a_direct_write_on_redis_evicts_the_near_cached_value() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"n:k", b"old"]).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(warm(&mut c, &mut admin, b"n:k").await?, bulk("old"));
    let invalidations = stat(&mut admin, "near_cache_invalidations").await?;

    // Written by another client, straight on Redis (redis-cli).
    assert_eq!(redis.cli(["SET", "n:k", "new"]).await?, "OK");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let v = c.call(&[b"GET", b"n:k"]).await?;
        if v == bulk("new") {
            break;
        }
        assert_eq!(v, bulk("old"), "only the old or the new value");
        ensure!(Instant::now() < deadline, "still the old value after 2 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(stat(&mut admin, "near_cache_invalidations").await? > invalidations);
    // The new value is cached again, and a DEL evicts it too.
    assert_eq!(warm(&mut c, &mut admin, b"n:k").await?, bulk("new"));
    direct.call(&[b"DEL", b"n:k"]).await?;
    let deadline = Instant::now() + Duration::from_secs(2);
    while c.call(&[b"GET", b"n:k"]).await? != b"$-1\r\n" {
        ensure!(Instant::now() < deadline, "deleted key still served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // FLUSHALL arrives as a null invalidation: everything goes.
    direct.call(&[b"SET", b"n:f", b"f"]).await?;
    warm(&mut c, &mut admin, b"n:f").await?;
    let flushes = stat(&mut admin, "near_cache_flushes").await?;
    direct.call(&[b"FLUSHALL"]).await?;
    wait_stat(&mut admin, "near_cache_flushes", |v| v > flushes).await?;
    assert_eq!(c.call(&[b"GET", b"n:f"]).await?, b"$-1\r\n");
    proxy.stop().await
}

/// The id of the proxy's tracking connection, from `CLIENT LIST`.
async fn tracking_client_id(direct: &mut Conn) -> Result<Option<String>> {
    let list = text(&direct.call(&[b"CLIENT", b"LIST"]).await?);
    Ok(list
        .lines()
        .find(|l| l.contains("name=nexus-near-tracking"))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned))
}

#[tokio::test]
async fn losing_the_tracking_link_flushes_the_near_cache() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let list = text(&direct.call(&[b"CLIENT", b"LIST"]).await?);
    let line = list
        .lines()
        .find(|l| l.contains("name=nexus-near-tracking"))
        .context("no tracking client")?;
    // RESP3, tracking on, broadcast mode.
    assert!(line.contains("resp=3"), "{line}");
    assert!(line.contains("flags=t") || line.contains('t'), "{line}");

    direct.call(&[b"SET", b"n:a", b"a"]).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    warm(&mut c, &mut admin, b"n:a").await?;
    assert!(stat(&mut admin, "near_cache_entries").await? >= 1);
    let flushes = stat(&mut admin, "near_cache_flushes").await?;

    let id = tracking_client_id(&mut direct).await?.context("no id")?;
    let killed = direct
        .call(&[b"CLIENT", b"KILL", b"ID", id.as_bytes()])
        .await?;
    assert_eq!(killed, b":1\r\n");
    wait_stat(&mut admin, "near_cache_flushes", |v| v > flushes).await?;
    // The link comes back (new connection), the cache serves again.
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    let new_id = tracking_client_id(&mut direct)
        .await?
        .context("no new link")?;
    assert_ne!(new_id, id);
    assert_eq!(warm(&mut c, &mut admin, b"n:a").await?, bulk("a"));

    // Redis restarts empty: the cached value must not survive it.
    let flushes = stat(&mut admin, "near_cache_flushes").await?;
    redis.restart().await?;
    wait_stat(&mut admin, "near_cache_flushes", |v| v > flushes).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let v = c.call(&[b"GET", b"n:a"]).await?;
        if v.first() != Some(&b'-') {
            assert_eq!(
                v,
                b"$-1\r\n",
                "a value from before the restart: {}",
                show(&v)
            );
            break;
        }
        ensure!(Instant::now() < deadline, "upstream never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_under_concurrent_clients() -> Result<()> {
    read_your_writes(NEAR, false).await
}

/// The same on a rule whose misses go through the stampede guard, which
/// offers the near cache the values it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_with_the_stampede_guard_filling() -> Result<()> {
    read_your_writes(GUARDED_RW, false).await
}

/// Near cache and stampede guard on the keys `read_your_writes` uses.
const GUARDED_RW: &str = "rules:\n  - commands: [GET]\n    keys: 'n:*'\n    stampede: { lock_ttl: 5s, wait_timeout: 3s, max_waiters: 100 }\n    near_cache: { ttl: 30s, max_entries: 1000 }\n";

/// The same with writers in `MULTI`/`EXEC` (pinned connections): their
/// writes are released by the `EXEC` reply, not the `+QUEUED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_holds_for_transactions_on_pinned_connections() -> Result<()> {
    read_your_writes(NEAR, true).await
}

async fn read_your_writes(yaml: &str, transactions: bool) -> Result<()> {
    const KEYS: usize = 4;
    let (_redis, proxy, mut admin) = setup(yaml).await?;
    // acked[k]: the highest sequence number a SET of n:rw{k} was acknowledged with.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    // One writer per key (so "the latest acknowledged value" is well defined).
    for k in 0..KEYS {
        let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), proxy.addr);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            let key = format!("n:rw{k}");
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let v = seq.to_string();
                if transactions {
                    let mut tx = cmd(&[b"MULTI"]);
                    tx.extend(cmd(&[b"SET", key.as_bytes(), v.as_bytes()]));
                    tx.extend(cmd(&[b"EXEC"]));
                    c.send(&tx).await?;
                    let got = c.read_frames(3).await?;
                    ensure!(got == b"+OK\r\n+QUEUED\r\n*1\r\n+OK\r\n", "{}", show(&got));
                } else {
                    ensure!(c.call(&[b"SET", key.as_bytes(), v.as_bytes()]).await? == b"+OK\r\n");
                }
                acked[k].store(seq, Ordering::SeqCst);
                // The writer reads its own write.
                let got = c.call(&[b"GET", key.as_bytes()]).await?;
                ensure!(got == bulk(&v), "writer read {} after SET {v}", show(&got));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        }));
    }
    // Readers: every value read is at least the one acknowledged before the GET was sent.
    for r in 0..12 {
        let (acked, stop, addr) = (Arc::clone(&acked), Arc::clone(&stop), proxy.addr);
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let k = i % KEYS;
                let floor = acked[k].load(Ordering::SeqCst);
                let got = c.call(&[b"GET", format!("n:rw{k}").as_bytes()]).await?;
                if floor == 0 && got == b"$-1\r\n" {
                    continue;
                }
                let s = text(&got);
                let seq: u64 = s
                    .split("\r\n")
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("reply {s:?}"))?;
                ensure!(
                    seq >= floor,
                    "stale read of n:rw{k}: {seq} after {floor} was acknowledged"
                );
            }
            anyhow::Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(WAIT, t).await???;
    }
    // The near cache was really in play.
    let hits = stat(&mut admin, "near_cache_hits").await?;
    assert!(hits > 100, "only {hits} near-cache hits");
    proxy.stop().await
}

#[tokio::test]
async fn the_byte_budget_and_value_limit_hold() -> Result<()> {
    const BUDGET: u64 = 64 * 1024;
    let yaml = "rules:\n  - commands: [GET]\n    keys: 'n:*'\n    near_cache: { ttl: 30s, max_entries: 100000, max_bytes: 64KiB, max_value_bytes: 4KiB }\n";
    let (redis, proxy, mut admin) = setup(yaml).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let value = "v".repeat(2000);
    let mut c = Conn::connect(proxy.addr).await?;
    for i in 0..200 {
        let key = format!("n:b{i}");
        direct
            .call(&[b"SET", key.as_bytes(), value.as_bytes()])
            .await?;
        for _ in 0..2 {
            assert_eq!(c.call(&[b"GET", key.as_bytes()]).await?, bulk(&value));
        }
        if i % 20 == 0 {
            let bytes = stat(&mut admin, "near_cache_bytes").await?;
            assert!(bytes <= BUDGET, "{bytes} bytes held");
        }
    }
    let bytes = stat(&mut admin, "near_cache_bytes").await?;
    let entries = stat(&mut admin, "near_cache_entries").await?;
    assert!(bytes <= BUDGET && bytes > 0, "{bytes} bytes");
    assert!(entries < 200 && entries > 0, "{entries} entries");
    assert!(stat(&mut admin, "near_cache_evictions").await? > 0);
    assert_eq!(stat(&mut admin, "near_cache_capacity_bytes").await?, BUDGET);

    // A value above max_value_bytes is never cached: every read reaches Redis.
    let big = "b".repeat(5000);
    direct.call(&[b"SET", b"n:big", big.as_bytes()]).await?;
    let before = command_calls(&mut direct, "get").await?;
    for _ in 0..5 {
        assert_eq!(c.call(&[b"GET", b"n:big"]).await?, bulk(&big));
    }
    assert_eq!(command_calls(&mut direct, "get").await? - before, 5);
    proxy.stop().await
}

#[tokio::test]
async fn hot_only_admission_waits_for_a_hot_key() -> Result<()> {
    let yaml = "rules:\n  - commands: [GET]\n    keys: 'n:*'\n    near_cache: { ttl: 30s, max_entries: 100, admit: hot, hot_rate: 50 }\n";
    let (redis, proxy, mut admin) = setup(yaml).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"n:cold", b"c"]).await?;
    direct.call(&[b"SET", b"n:hot", b"h"]).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    for _ in 0..3 {
        c.call(&[b"GET", b"n:cold"]).await?;
    }
    assert_eq!(
        stat(&mut admin, "near_cache_entries").await?,
        0,
        "a cold key was admitted"
    );
    // Read hard: the detector rates it above 50/s and it gets admitted.
    assert_eq!(warm(&mut c, &mut admin, b"n:hot").await?, bulk("h"));
    assert_eq!(stat(&mut admin, "near_cache_entries").await?, 1);
    proxy.stop().await
}

#[tokio::test]
async fn no_near_cache_without_a_rule_naming_one() -> Result<()> {
    for yaml in [
        None,
        Some("rules:\n  - commands: [GET]\n    keys: 'n:*'\n    singleflight: true\n"),
    ] {
        let redis = RedisServer::start().await?;
        let proxy = ProxyHandle::start(&redis.url(), |b| match yaml {
            Some(y) => b.policy(policy(y)),
            None => b,
        })
        .await?;
        let mut direct = Conn::connect(redis.addr()).await?;
        direct.call(&[b"SET", b"n:1", b"one"]).await?;
        let mut c = Conn::connect(proxy.addr).await?;
        let before = command_calls(&mut direct, "get").await?;
        for _ in 0..20 {
            assert_eq!(c.call(&[b"GET", b"n:1"]).await?, bulk("one"));
        }
        assert_eq!(
            command_calls(&mut direct, "get").await? - before,
            20,
            "policy {yaml:?}"
        );
        assert_eq!(tracking_client_id(&mut direct).await?, None);
        if yaml.is_some() {
            assert_eq!(stat(&mut c, "near_cache_hits").await?, 0);
            assert_eq!(stat(&mut c, "near_cache_tracking_now").await?, 0);
        }
        proxy.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn multi_key_writes_and_scripts_drop_entries_before_their_reply() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let keys: Vec<String> = (0..10).map(|i| format!("n:m{i}")).collect();
    for k in &keys {
        direct.call(&[b"SET", k.as_bytes(), b"old"]).await?;
        warm(&mut c, &mut admin, k.as_bytes()).await?;
    }
    // One MSET of 10 near-cached keys (more than one batch's 8 stripe marks:
    // the global mark). Every read right after its reply sees the new values.
    let mut mset: Vec<&[u8]> = vec![b"MSET"];
    for k in &keys {
        mset.extend([k.as_bytes(), &b"new"[..]]);
    }
    assert_eq!(c.call(&mset).await?, b"+OK\r\n");
    for k in &keys {
        assert_eq!(c.call(&[b"GET", k.as_bytes()]).await?, bulk("new"), "{k}");
    }
    // A script writes keys the proxy cannot see: the whole cache is flushed.
    for k in &keys {
        warm(&mut c, &mut admin, k.as_bytes()).await?;
    }
    let flushes = stat(&mut admin, "near_cache_flushes").await?;
    let script = b"redis.call('SET', KEYS[1], ARGV[1]) return 1";
    assert_eq!(
        c.call(&[b"EVAL", script, b"1", b"n:m3", b"scripted"])
            .await?,
        b":1\r\n"
    );
    assert_eq!(c.call(&[b"GET", b"n:m3"]).await?, bulk("scripted"));
    assert!(stat(&mut admin, "near_cache_flushes").await? > flushes);
    proxy.stop().await
}

#[tokio::test]
async fn a_policy_with_new_prefixes_resubscribes_the_link() -> Result<()> {
    let redis = RedisServer::start().await?;
    let handle = nexus_cache::policy::PolicyHandle::new(policy(NEAR));
    let proxy = {
        let handle = handle.clone();
        ProxyHandle::start(&redis.url(), move |b| b.policy_handle(handle)).await?
    };
    let mut admin = Conn::connect(proxy.addr).await?;
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    direct.call(&[b"SET", b"m:1", b"old"]).await?;
    direct.call(&[b"SET", b"n:1", b"n"]).await?;
    warm(&mut c, &mut admin, b"n:1").await?;
    let flushes = stat(&mut admin, "near_cache_flushes").await?;

    // The near cache moves to `m:*`: a new link subscribed to the new prefix.
    handle.store(policy(
        "rules:\n  - commands: [GET]\n    keys: 'm:*'\n    near_cache: { ttl: 30s, max_entries: 10 }\n",
    ));
    wait_stat(&mut admin, "near_cache_flushes", |v| v > flushes).await?;
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    assert_eq!(warm(&mut c, &mut admin, b"m:1").await?, bulk("old"));
    // Invalidations arrive for the new prefix.
    assert_eq!(redis.cli(["SET", "m:1", "new"]).await?, "OK");
    let deadline = Instant::now() + Duration::from_secs(2);
    while c.call(&[b"GET", b"m:1"]).await? != bulk("new") {
        ensure!(Instant::now() < deadline, "m:1 still old after 2 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // `n:*` is no longer near-cached: its reads reach Redis.
    let before = command_calls(&mut direct, "get").await?;
    for _ in 0..3 {
        c.call(&[b"GET", b"n:1"]).await?;
    }
    assert_eq!(command_calls(&mut direct, "get").await? - before, 3);
    proxy.stop().await
}

/// A rule with both a stampede guard and a near cache.
const GUARDED_NEAR: &str = "rules:\n  - commands: [GET]\n    keys: 'g:*'\n    stampede: { lock_ttl: 5s, wait_timeout: 3s, max_waiters: 100 }\n    near_cache: { ttl: 30s, max_entries: 1000 }\n";

/// GETs of `key` through `c` until one answers `want` (bounded by 2 s);
/// every answer before is `old`.
async fn until_seen(c: &mut Conn, key: &[u8], old: &[u8], want: &[u8]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let v = c.call(&[b"GET", key]).await?;
        if v == want {
            return Ok(());
        }
        ensure!(v == old, "neither the old nor the new value: {}", show(&v));
        ensure!(Instant::now() < deadline, "still the old value after 2 s");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stampede_guard_fills_the_near_cache_of_its_rule() -> Result<()> {
    let (redis, proxy, mut admin) = setup(GUARDED_NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let nil = b"$-1\r\n".to_vec();

    // A miss: the guard sends one filler to the database and holds the
    // other reader until the fill; neither nil is near-cached.
    let mut filler = Conn::connect(proxy.addr).await?;
    assert_eq!(filler.call(&[b"GET", b"g:k"]).await?, nil);
    let addr = proxy.addr;
    let held = tokio::spawn(async move {
        let mut c = Conn::connect(addr).await?;
        c.call(&[b"GET", b"g:k"]).await
    });
    wait_stat(&mut admin, "held_now", |v| v == 1).await?;
    assert_eq!(filler.call(&[b"SET", b"g:k", b"v1"]).await?, b"+OK\r\n");
    let got = tokio::time::timeout(WAIT, held).await???;
    assert_eq!(got, bulk("v1"), "the held reader gets the fill");
    assert_eq!(stat(&mut admin, "leases_taken").await?, 1);
    assert_eq!(stat(&mut admin, "near_cache_hits").await?, 0);

    // The next GET reads through the guard and fills the near cache;
    // from then on Redis sees no GET of the key.
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(warm(&mut c, &mut admin, b"g:k").await?, bulk("v1"));
    let hits = stat(&mut admin, "near_cache_hits").await?;
    let gets = command_calls(&mut direct, "get").await?;
    for _ in 0..50 {
        assert_eq!(c.call(&[b"GET", b"g:k"]).await?, bulk("v1"));
        assert_eq!(filler.call(&[b"GET", b"g:k"]).await?, bulk("v1"));
    }
    assert!(stat(&mut admin, "near_cache_hits").await? >= hits + 100);
    assert_eq!(
        command_calls(&mut direct, "get").await?,
        gets,
        "hits must not reach Redis"
    );

    // Read-your-writes: a write through the proxy is seen by the next read,
    // on the writer's connection and on any other.
    assert_eq!(c.call(&[b"SET", b"g:k", b"v2"]).await?, b"+OK\r\n");
    assert_eq!(c.call(&[b"GET", b"g:k"]).await?, bulk("v2"));
    assert_eq!(filler.call(&[b"GET", b"g:k"]).await?, bulk("v2"));
    assert_eq!(warm(&mut c, &mut admin, b"g:k").await?, bulk("v2"));

    // A direct write on Redis evicts the entry through client tracking.
    assert_eq!(redis.cli(["SET", "g:k", "v3"]).await?, "OK");
    until_seen(&mut c, b"g:k", &bulk("v2"), &bulk("v3")).await?;
    assert_eq!(warm(&mut c, &mut admin, b"g:k").await?, bulk("v3"));

    // A direct deletion too; the nil that follows is not cached: the
    // reader that got it is the filler, and its fill is served next.
    direct.call(&[b"DEL", b"g:k"]).await?;
    until_seen(&mut c, b"g:k", &bulk("v3"), &nil).await?;
    assert_eq!(c.call(&[b"SET", b"g:k", b"v4"]).await?, b"+OK\r\n");
    assert_eq!(warm(&mut c, &mut admin, b"g:k").await?, bulk("v4"));
    assert_eq!(filler.call(&[b"GET", b"g:k"]).await?, bulk("v4"));
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_replies_cannot_be_counted_holds_its_write_marks() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut reader = Conn::connect(proxy.addr).await?;
    direct.call(&[b"SET", b"n:sub", b"old"]).await?;
    // A RESP2 session: one SUBSCRIBE of three channels gets three replies,
    // its UNSUBSCRIBE three more; counting one reply per command would
    // now run four replies ahead.
    let mut session = Conn::connect(proxy.addr).await?;
    session
        .send(&cmd(&[b"SUBSCRIBE", b"c1", b"c2", b"c3"]))
        .await?;
    session.read_frames(3).await?;
    session.send(&cmd(&[b"UNSUBSCRIBE"])).await?;
    session.read_frames(3).await?;
    // Redis holds writes back for a moment: the session's PING is answered
    // while its SET waits.
    let paused = direct
        .call(&[b"CLIENT", b"PAUSE", b"600", b"WRITE"])
        .await?;
    ensure!(paused == b"+OK\r\n", "{}", show(&paused));
    let mut pipeline = cmd(&[b"PING"]);
    pipeline.extend(cmd(&[b"SET", b"n:sub", b"new"]));
    session.send(&pipeline).await?;
    ensure!(session.read_frames(1).await? == b"+PONG\r\n");
    // The SET has not run, so readers get the old value; but with the write
    // in flight, the near cache must not keep it (it would outlive the
    // write's acknowledgement).
    let hits = stat(&mut admin, "near_cache_hits").await?;
    for _ in 0..3 {
        ensure!(reader.call(&[b"GET", b"n:sub"]).await? == bulk("old"));
    }
    ensure!(
        stat(&mut admin, "near_cache_hits").await? == hits,
        "a value was cached while a write of its key was in flight"
    );
    ensure!(session.read_frames(1).await? == b"+OK\r\n");
    // Until that session ends, its writes keep their marks: no fills.
    for _ in 0..3 {
        ensure!(reader.call(&[b"GET", b"n:sub"]).await? == bulk("new"));
    }
    ensure!(stat(&mut admin, "near_cache_hits").await? == hits);
    drop(session);
    ensure!(warm(&mut reader, &mut admin, b"n:sub").await? == bulk("new"));
    // Writes before the session turned uncountable are released by count.
    let mut session = Conn::connect(proxy.addr).await?;
    ensure!(session.call(&[b"CLIENT", b"SETNAME", b"s"]).await? == b"+OK\r\n");
    ensure!(session.call(&[b"SET", b"n:sub", b"newer"]).await? == b"+OK\r\n");
    ensure!(warm(&mut reader, &mut admin, b"n:sub").await? == bulk("newer"));
    // `CLIENT REPLY SKIP` leaves the session's own count behind: held.
    session.send(&cmd(&[b"CLIENT", b"REPLY", b"SKIP"])).await?;
    let mut pipeline = cmd(&[b"SET", b"n:sub", b"skipped"]);
    pipeline.extend(cmd(&[b"SET", b"n:sub", b"newest"]));
    session.send(&pipeline).await?;
    ensure!(session.read_frames(1).await? == b"+OK\r\n");
    let hits = stat(&mut admin, "near_cache_hits").await?;
    for _ in 0..3 {
        ensure!(reader.call(&[b"GET", b"n:sub"]).await? == bulk("newest"));
    }
    ensure!(stat(&mut admin, "near_cache_hits").await? == hits);
    drop(session);
    ensure!(warm(&mut reader, &mut admin, b"n:sub").await? == bulk("newest"));
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_no_near_cache_marks() -> Result<()> {
    let (redis, proxy, mut admin) = setup(NEAR).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut reader = Conn::connect(proxy.addr).await?;
    let keys: Vec<String> = (0..10).map(|i| format!("n:tx{i}")).collect();
    for k in &keys {
        direct.call(&[b"SET", k.as_bytes(), b"old"]).await?;
    }
    direct.call(&[b"SET", b"n:other", b"v"]).await?;
    // A transaction queues writes of ten near-cached keys (more than one
    // batch's eight stripe marks) and stays open.
    let mut tx = Conn::connect(proxy.addr).await?;
    ensure!(tx.call(&[b"MULTI"]).await? == b"+OK\r\n");
    for k in &keys {
        ensure!(tx.call(&[b"SET", k.as_bytes(), b"new"]).await? == b"+QUEUED\r\n");
    }
    // Nothing ran yet: the near cache keeps filling, with the current values.
    let hits = stat(&mut admin, "near_cache_hits").await?;
    for _ in 0..2 {
        ensure!(reader.call(&[b"GET", b"n:other"]).await? == bulk("v"));
        ensure!(reader.call(&[b"GET", b"n:tx3"]).await? == bulk("old"));
    }
    let now = stat(&mut admin, "near_cache_hits").await?;
    ensure!(
        now >= hits + 2,
        "no near-cache fill while a transaction was open"
    );
    // EXEC marks its writes: once it is answered, nobody reads an old value.
    let exec = tx.call(&[b"EXEC"]).await?;
    ensure!(exec.starts_with(b"*10\r\n"), "{}", show(&exec));
    for k in &keys {
        ensure!(
            reader.call(&[b"GET", k.as_bytes()]).await? == bulk("new"),
            "{k}"
        );
    }
    // And the marks were released with EXEC's reply.
    ensure!(warm(&mut reader, &mut admin, b"n:tx3").await? == bulk("new"));
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_a_pinned_session_cannot_parse_is_refused_not_forwarded() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.policy(policy(NEAR)).max_elements(8)).await?;
    let mut admin = Conn::connect(proxy.addr).await?;
    wait_stat(&mut admin, "near_cache_tracking_now", |v| v == 1).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut reader = Conn::connect(proxy.addr).await?;
    direct.call(&[b"SET", b"n:raw", b"old"]).await?;
    ensure!(warm(&mut reader, &mut admin, b"n:raw").await? == bulk("old"));
    // A pinned session writes the key, then sends an inline write Redis
    // would run but the proxy cannot parse (an escaped quote), then more.
    // Were it forwarded, it would take no near-cache mark: a reader could
    // be served "old" after it was acknowledged.
    let mut session = Conn::connect(proxy.addr).await?;
    ensure!(session.call(&[b"CLIENT", b"SETNAME", b"s"]).await? == b"+OK\r\n");
    let mut script = cmd(&[b"SET", b"n:raw", b"mid"]);
    script.extend_from_slice(b"SET n:raw \"new\\\"er\"\r\n");
    script.extend(cmd(&[b"SET", b"n:raw", b"after"]));
    session.send(&script).await?;
    let rest = text(&session.read_to_eof().await?);
    ensure!(
        rest.starts_with("+OK\r\n-ERR Protocol error: ")
            && rest.ends_with("\r\n")
            && rest.matches("\r\n").count() == 2,
        "{rest:?}"
    );
    // Neither it nor what followed reached Redis.
    ensure!(direct.call(&[b"GET", b"n:raw"]).await? == bulk("mid"));
    ensure!(reader.call(&[b"GET", b"n:raw"]).await? == bulk("mid"));
    // More arguments than the proxy's `max_elements` (Redis takes up to
    // 2^31), inside a transaction: refused the same way; the `EXEC` after
    // it is never sent, so the queued write never runs.
    let mut tx = Conn::connect(proxy.addr).await?;
    ensure!(tx.call(&[b"MULTI"]).await? == b"+OK\r\n");
    let mut del: Vec<&[u8]> = vec![b"DEL", b"n:raw"];
    del.extend([&b"n:x"[..]; 9]);
    let mut script = cmd(&[b"SET", b"n:raw", b"queued"]);
    script.extend(cmd(&del));
    script.extend(cmd(&[b"EXEC"]));
    tx.send(&script).await?;
    let rest = text(&tx.read_to_eof().await?);
    ensure!(
        rest.starts_with("+QUEUED\r\n-ERR Protocol error: ") && rest.matches("\r\n").count() == 2,
        "{rest:?}"
    );
    ensure!(direct.call(&[b"GET", b"n:raw"]).await? == bulk("mid"));
    // Nothing is left held: the near cache fills again.
    ensure!(warm(&mut reader, &mut admin, b"n:raw").await? == bulk("mid"));
    ensure!(stat(&mut admin, "proxy_errors").await? >= 2);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_session_gets_every_reply_before_the_error() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let bad = b"GET \"a\\\"b\"\r\n";
    let error = "-ERR Protocol error: invalid inline command: backslash escapes in quotes are not supported\r\n";
    // Replies larger than Redis writes in one go: all of them arrive
    // whole, then the error (shutting the upstream write side at once
    // would have made Redis drop the rest).
    let mut session = Conn::connect(proxy.addr).await?;
    ensure!(session.call(&[b"CLIENT", b"SETNAME", b"s"]).await? == b"+OK\r\n");
    let big = vec![b'x'; 4 << 20];
    ensure!(session.call(&[b"SET", b"big", &big]).await? == b"+OK\r\n");
    let mut script = cmd(&[b"GET", b"big"]);
    script.extend(cmd(&[b"GET", b"big"]));
    script.extend_from_slice(bad);
    session.send(&script).await?;
    let mut want = Vec::new();
    for _ in 0..2 {
        want.extend(format!("${}\r\n", big.len()).into_bytes());
        want.extend(&big);
        want.extend(b"\r\n");
    }
    want.extend(error.as_bytes());
    ensure!(
        session.read_to_eof().await? == want,
        "replies cut or reordered"
    );
    // In RESP2 subscribe mode, with replies off, and in RESP3 alike: the
    // replies due, then the error (the proxy's farewell to Redis unseen).
    let subscribed = "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    let cases: [(&[&[u8]], &str); 3] = [
        (&[b"SUBSCRIBE", b"c1"], subscribed),
        (&[b"CLIENT", b"REPLY", b"OFF"], ""),
        (&[b"HELLO", b"3"], "+PONG\r\n"),
    ];
    for (first, tail) in cases {
        let mut c = Conn::connect(proxy.addr).await?;
        let mut script = cmd(first);
        script.extend(cmd(&[b"PING"]));
        script.extend_from_slice(bad);
        c.send(&script).await?;
        let rest = text(&c.read_to_eof().await?);
        let want = format!("{tail}{error}");
        ensure!(
            rest.ends_with(&want) && (first[0] == b"HELLO" || rest == want),
            "{}: {rest:?}",
            text(first[0])
        );
    }
    proxy.stop().await
}
