//! The cache mechanisms live in the proxy, against a real redis-server:
//! singleflight, read-your-writes, default TTLs, policy files and reloads,
//! hot-key TTL extension, tags.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Conn, ProxyHandle, WAIT, command_calls, show, stat};
use nexus_cache::policy::{Policy, ReloaderConfig};
use nexus_testkit::RedisServer;

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml_str(yaml).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn pttl(redis: &mut Conn, key: &str) -> Result<i64> {
    let r = text(&redis.call(&[b"PTTL", key.as_bytes()]).await?);
    r.trim()
        .trim_start_matches(':')
        .parse()
        .with_context(|| format!("PTTL reply {r:?}"))
}

const SF: &str = "rules:\n  - commands: [GET]\n    keys: 'p:*'\n    singleflight: true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_one_upstream_call() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF))).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"p:1", b"shared"]).await?;
    // Warm the pool connections so the pause below only holds the GET.
    let mut warm = Conn::connect(proxy.addr).await?;
    warm.call(&[b"PING"]).await?;
    let before = command_calls(&mut direct, "get").await?;
    direct.call(&[b"CLIENT", b"PAUSE", b"400", b"ALL"]).await?;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            c.call(&[b"GET", b"p:1"]).await
        }));
    }
    for t in tasks {
        let got = t.await??;
        ensure!(got == b"$6\r\nshared\r\n", "{}", show(&got));
    }
    let after = command_calls(&mut direct, "get").await?;
    ensure!(
        after - before <= 2,
        "{} upstream GETs for 20 clients",
        after - before
    );
    ensure!(stat(&mut warm, "collapsed_calls").await? >= 18);
    // Keys outside the rule are never collapsed.
    let got = warm.call(&[b"GET", b"other"]).await?;
    ensure!(got == b"$-1\r\n");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_disconnecting_mid_flight_does_not_hang_followers() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF))).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"p:2", b"v"]).await?;
    let mut warm = Conn::connect(proxy.addr).await?;
    warm.call(&[b"PING"]).await?;
    direct.call(&[b"CLIENT", b"PAUSE", b"300", b"ALL"]).await?;
    let mut leader = Conn::connect(proxy.addr).await?;
    leader.send(&common::cmd(&[b"GET", b"p:2"])).await?;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut followers = Vec::new();
    for _ in 0..5 {
        let addr = proxy.addr;
        followers.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            c.call(&[b"GET", b"p:2"]).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    drop(leader);
    for f in followers {
        let got = tokio::time::timeout(WAIT, f).await???;
        ensure!(got == b"$1\r\nv\r\n", "{}", show(&got));
    }
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_after_writes_see_them_under_concurrent_readers() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF)).pool_size(3)).await?;
    let stop = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (addr, stop) = (proxy.addr, Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            while stop.load(Ordering::Relaxed) == 0 {
                c.call(&[b"GET", b"p:ryw"]).await?;
            }
            anyhow::Ok(())
        }));
    }
    let mut writer = Conn::connect(proxy.addr).await?;
    let mut other = Conn::connect(proxy.addr).await?;
    for i in 0..300u32 {
        let v = i.to_string();
        // Pipelined: the GET on the same connection must see the SET.
        let mut script = common::cmd(&[b"SET", b"p:ryw", v.as_bytes()]);
        script.extend(common::cmd(&[b"GET", b"p:ryw"]));
        writer.send(&script).await?;
        let got = writer.read_frames(2).await?;
        let want = format!("+OK\r\n${}\r\n{v}\r\n", v.len());
        ensure!(got == want.as_bytes(), "round {i}: {}", show(&got));
        // Another connection, after the write was acknowledged.
        let got = other.call(&[b"GET", b"p:ryw"]).await?;
        let want = format!("${}\r\n{v}\r\n", v.len());
        ensure!(got == want.as_bytes(), "other, round {i}: {}", show(&got));
    }
    stop.store(1, Ordering::Relaxed);
    for r in readers {
        r.await??;
    }
    proxy.stop().await
}

#[tokio::test]
async fn default_ttl_with_jitter_is_added_to_sets_without_one() -> Result<()> {
    let redis = RedisServer::start().await?;
    let p =
        policy("rules:\n  - commands: [SET]\n    keys: 's:*'\n    ttl: 60\n    ttl_jitter: 10s\n");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(p)).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    // Pipelined with plain commands: the rewrite stays in order.
    let mut script = common::cmd(&[b"SET", b"s:1", b"a"]);
    script.extend(common::cmd(&[b"SET", b"s:2", b"b", b"EX", b"5"]));
    script.extend(common::cmd(&[b"SET", b"x:1", b"c"]));
    script.extend(common::cmd(&[b"GET", b"s:1"]));
    c.send(&script).await?;
    let got = c.read_frames(4).await?;
    ensure!(got == b"+OK\r\n+OK\r\n+OK\r\n$1\r\na\r\n", "{}", show(&got));
    let t1 = pttl(&mut direct, "s:1").await?;
    ensure!((59_000..=70_000).contains(&t1), "s:1 pttl {t1}");
    let t2 = pttl(&mut direct, "s:2").await?;
    ensure!((1..=5_000).contains(&t2), "explicit EX kept: {t2}");
    ensure!(pttl(&mut direct, "x:1").await? == -1, "no rule, no TTL");
    proxy.stop().await
}

#[tokio::test]
async fn seed_policy_file_loads_and_a_bad_reload_keeps_the_old_policy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("policy.yaml");
    std::fs::write(
        &path,
        "policies:\n  - match: SET\n    ttl: 30\n    enabled: true\n",
    )?;
    let mut reload = ReloaderConfig::new(&path);
    reload.interval = Duration::from_millis(50);
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy_file(reload)).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let shown = text(&c.call(&[b"NEXUS.POLICY"]).await?);
    ensure!(
        shown.starts_with("*1\r\n") && shown.contains("seed SET") && shown.contains("ttl=30s"),
        "{shown}"
    );
    c.call(&[b"SET", b"k1", b"v"]).await?;
    let t = pttl(&mut direct, "k1").await?;
    ensure!((29_000..=30_000).contains(&t), "seed ttl applied: {t}");

    std::fs::write(&path, "rules:\n  - commands: [SET]\n    ttl: -5\n")?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    ensure!(stat(&mut c, "policy_reloads_failed").await? >= 1);
    ensure!(
        text(&c.call(&[b"NEXUS.POLICY"]).await?) == shown,
        "old policy kept"
    );
    c.call(&[b"SET", b"k2", b"v"]).await?;
    ensure!(
        pttl(&mut direct, "k2").await? > 29_000,
        "old policy still applied"
    );

    std::fs::write(
        &path,
        "rules:\n  - name: longer\n    commands: [SET]\n    ttl: 90\n",
    )?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    ensure!(stat(&mut c, "policy_reloads_ok").await? >= 1);
    ensure!(text(&c.call(&[b"NEXUS.POLICY"]).await?).contains("longer"));
    c.call(&[b"SET", b"k3", b"v"]).await?;
    ensure!(
        pttl(&mut direct, "k3").await? > 89_000,
        "new policy applied"
    );
    proxy.stop().await
}

#[tokio::test]
async fn invalid_policy_file_fails_serve() -> Result<()> {
    let redis = RedisServer::start().await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "rules:\n  - commands: [GET]\n    bogus: 1\n")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let config = nexus_cache::ProxyConfig::builder()
        .upstream(redis.url())
        .policy_file(ReloaderConfig::new(&path))
        .build()?;
    let err = tokio::time::timeout(
        WAIT,
        nexus_cache::Proxy::new(config).serve(listener, std::future::pending()),
    )
    .await?
    .unwrap_err();
    ensure!(err.to_string().contains("bogus"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_get_their_ttl_extended_up_to_the_ceiling() -> Result<()> {
    // Every access of a listed key is checked for an extension.
    ttl_extension_through_the_proxy(10, 200).await
}

/// The same with a threshold of 320: one access in 20 of a listed key is
/// checked (`threshold / 16`), which must not keep hot keys from being
/// extended once per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_keys_checked_one_access_in_n_are_still_extended() -> Result<()> {
    ttl_extension_through_the_proxy(320, 1000).await
}

/// Reads `h:ttl` and `h:forever` `burst` times each per round under a `hot`
/// rule with `threshold` per 500 ms, and checks the extensions.
async fn ttl_extension_through_the_proxy(threshold: u32, burst: usize) -> Result<()> {
    let redis = RedisServer::start().await?;
    let p = policy(&format!(
        "rules:\n  - commands: [GET]\n    keys: 'h:*'\n    hot: {{ threshold: {threshold}, window: 500ms, extend_by: 10s, max_ttl: 20s }}\n",
    ));
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(p)).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct
        .call(&[b"SET", b"h:ttl", b"v", b"PX", b"5000"])
        .await?;
    direct.call(&[b"SET", b"h:forever", b"v"]).await?;
    direct
        .call(&[b"SET", b"h:cold", b"v", b"PX", b"5000"])
        .await?;
    c.call(&[b"GET", b"h:cold"]).await?;
    let mut frames = Vec::new();
    for _ in 0..burst {
        frames.extend(common::cmd(&[b"GET", b"h:ttl"]));
        frames.extend(common::cmd(&[b"GET", b"h:forever"]));
    }
    let mut last = 0;
    for round in 0..4 {
        c.send(&frames).await?;
        c.read_frames(2 * burst).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = pttl(&mut direct, "h:ttl").await?;
        ensure!(t <= 20_000, "round {round}: beyond the ceiling: {t}");
        last = t;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    ensure!(last > 15_000, "extended to near the ceiling: {last}");
    ensure!(
        pttl(&mut direct, "h:forever").await? == -1,
        "persistent stays persistent"
    );
    ensure!(
        pttl(&mut direct, "h:cold").await? <= 5_000,
        "cold key untouched"
    );
    ensure!(stat(&mut c, "ttl_extensions").await? >= 2);
    ensure!(stat(&mut c, "hot_keys").await? >= 1);
    let top = text(&c.call(&[b"NEXUS.HOTKEYS", b"2"]).await?);
    ensure!(top.starts_with("*2\r\n*2\r\n"), "{top}");
    ensure!(
        top.contains("h:ttl") && top.contains("h:forever") && !top.contains("h:cold"),
        "{top}"
    );
    let rate: f64 = top.split("\r\n").nth(5).unwrap_or("").parse()?;
    ensure!(rate > 10.0, "rate {rate} in {top}");
    proxy.stop().await
}

const TAGS: &str = "rules:\n  - commands: [SET]\n    keys: 'product:*'\n    tags: [products]\n";

#[tokio::test]
async fn tag_and_invalidate_through_the_proxy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(TAGS))).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut script = common::cmd(&[b"SET", b"product:1", b"a"]);
    script.extend(common::cmd(&[b"SET", b"product:2", b"b", b"NX"]));
    script.extend(common::cmd(&[b"GET", b"product:1"]));
    c.send(&script).await?;
    let got = c.read_frames(3).await?;
    ensure!(got == b"+OK\r\n+OK\r\n$1\r\na\r\n", "{}", show(&got));
    ensure!(
        c.call(&[b"NEXUS.TAG", b"products", b"other:1", b"product:1"])
            .await?
            == b":1\r\n"
    );
    direct.call(&[b"SET", b"other:1", b"x"]).await?;
    // After SCRIPT FLUSH the proxy loads its scripts again (NOSCRIPT).
    direct.call(&[b"SCRIPT", b"FLUSH"]).await?;
    ensure!(c.call(&[b"SET", b"product:3", b"c"]).await? == b"+OK\r\n");
    let members = text(&direct.call(&[b"SCARD", b"tag:products"]).await?);
    ensure!(members == ":4\r\n", "{members}");
    ensure!(c.call(&[b"NEXUS.INVALIDATE", b"products"]).await? == b":4\r\n");
    let left = direct
        .call(&[
            b"EXISTS",
            b"product:1",
            b"product:2",
            b"product:3",
            b"other:1",
            b"tag:products",
        ])
        .await?;
    ensure!(left == b":0\r\n", "{}", show(&left));
    ensure!(stat(&mut c, "invalidations").await? == 1);
    ensure!(stat(&mut c, "invalidated_keys").await? == 4);
    let err = text(&c.call(&[b"NEXUS.INVALIDATE"]).await?);
    ensure!(err.starts_with("-ERR wrong number"), "{err}");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_racing_with_tagged_writes_leaves_no_key_behind() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(TAGS)).pool_size(2)).await?;
    // Each writer records the last key whose write was acknowledged.
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..4).map(|_| AtomicU64::new(0)).collect());
    let mut writers = Vec::new();
    for w in 0..4usize {
        let (addr, acked) = (proxy.addr, Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            for i in 1..=400u64 {
                let key = format!("product:{w}:{i}");
                let r = c.call(&[b"SET", key.as_bytes(), b"v"]).await?;
                ensure!(r == b"+OK\r\n", "{}", show(&r));
                acked[w].store(i, Ordering::SeqCst);
            }
            anyhow::Ok(())
        }));
    }
    let mut inv = Conn::connect(proxy.addr).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let before: Vec<u64> = acked.iter().map(|a| a.load(Ordering::SeqCst)).collect();
        let r = inv.call(&[b"NEXUS.INVALIDATE", b"products"]).await?;
        ensure!(r.starts_with(b":"), "{}", show(&r));
        for (w, &upto) in before.iter().enumerate() {
            for i in (1..=upto).rev().take(50) {
                let key = format!("product:{w}:{i}");
                let e = direct.call(&[b"EXISTS", key.as_bytes()]).await?;
                ensure!(
                    e == b":0\r\n",
                    "{key} written before the invalidation survived it"
                );
            }
        }
    }
    for w in writers {
        w.await??;
    }
    inv.call(&[b"NEXUS.INVALIDATE", b"products"]).await?;
    let keys = text(&direct.call(&[b"KEYS", b"product:*"]).await?);
    ensure!(keys == "*0\r\n", "left behind: {keys}");
    proxy.stop().await
}

#[tokio::test]
async fn admin_commands_without_a_policy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    ensure!(c.call(&[b"NEXUS.POLICY"]).await? == b"*0\r\n");
    ensure!(c.call(&[b"NEXUS.HOTKEYS"]).await? == b"*0\r\n");
    let err = text(&c.call(&[b"NEXUS.TAG", b"t", b"k"]).await?);
    ensure!(err.contains("needs a cache policy"), "{err}");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_a_transaction_are_seen_by_later_collapsed_reads() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF))).await?;
    let stop = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (addr, stop) = (proxy.addr, Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            while stop.load(Ordering::Relaxed) == 0 {
                c.call(&[b"GET", b"p:tx"]).await?;
            }
            anyhow::Ok(())
        }));
    }
    // A pinned client (MULTI) writes; an unpinned one reads after each EXEC.
    let mut tx = Conn::connect(proxy.addr).await?;
    let mut reader = Conn::connect(proxy.addr).await?;
    for i in 0..100u32 {
        let v = i.to_string();
        let mut script = common::cmd(&[b"MULTI"]);
        script.extend(common::cmd(&[b"SET", b"p:tx", v.as_bytes()]));
        script.extend(common::cmd(&[b"EXEC"]));
        tx.send(&script).await?;
        tx.read_frames(3).await?;
        let got = reader.call(&[b"GET", b"p:tx"]).await?;
        let want = format!("${}\r\n{v}\r\n", v.len());
        ensure!(got == want.as_bytes(), "round {i}: {}", show(&got));
    }
    // NEXUS.* on a pinned connection is still answered by the proxy.
    let stats = text(&tx.call(&[b"NEXUS.STATS"]).await?);
    ensure!(stats.contains("pinned_clients"), "{stats}");
    stop.store(1, Ordering::Relaxed);
    for r in readers {
        r.await??;
    }
    proxy.stop().await
}

const SF_MGET: &str =
    "rules:\n  - commands: [GET, MGET]\n    keys: 'p:*'\n    singleflight: true\n";

/// Identical concurrent `MGET`s whose keys all have singleflight share one
/// upstream call; an `MGET` with a key outside the rule is not collapsed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_mgets_share_one_upstream_call() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF_MGET))).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    direct.call(&[b"SET", b"p:1", b"one"]).await?;
    direct.call(&[b"SET", b"other", b"x"]).await?;
    let mut warm = Conn::connect(proxy.addr).await?;
    warm.call(&[b"PING"]).await?;
    for (keys, most) in [(&[&b"p:1"[..], b"p:2"], 2), (&[&b"p:1"[..], b"other"], 20)] {
        let before = command_calls(&mut direct, "mget").await?;
        direct.call(&[b"CLIENT", b"PAUSE", b"400", b"ALL"]).await?;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let addr = proxy.addr;
            let keys: Vec<Vec<u8>> = keys.iter().map(|k| k.to_vec()).collect();
            tasks.push(tokio::spawn(async move {
                let mut c = Conn::connect(addr).await?;
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(Vec::as_slice));
                c.call(&args).await
            }));
        }
        let want: &[u8] = if keys[1] == b"p:2" {
            b"*2\r\n$3\r\none\r\n$-1\r\n"
        } else {
            b"*2\r\n$3\r\none\r\n$1\r\nx\r\n"
        };
        for t in tasks {
            let got = t.await??;
            ensure!(got == want, "{}", show(&got));
        }
        let n = command_calls(&mut direct, "mget").await? - before;
        if most == 2 {
            ensure!(n <= 2, "{n} upstream MGETs for 20 clients");
        } else {
            ensure!(
                n == 20,
                "{n} upstream MGETs: a key outside the rule was collapsed"
            );
        }
    }
    proxy.stop().await
}

/// A command, and two replies to it.
type Read<'a> = (&'a [&'a [u8]], &'a [u8], &'a [u8]);

/// A read sent after a write of its key, on another connection, never joins
/// a flight that began before the write, for `GET` and `MGET` alike.
///
/// Deterministic: with one pool connection, Redis runs commands in the order
/// the proxy sends them. Redis is paused, so the leader's flight is held
/// (its `GET` sent, no reply); then a write of the key is sent on a second
/// connection, then the same read on a third. Had the read joined the held
/// flight, it would get the value from before the write; started as its own
/// flight behind the write, it gets the written value. (Without the pause
/// the race this guards against is a window of microseconds, which a test
/// of many concurrent reads rarely hits.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_sent_after_a_write_never_joins_an_earlier_flight() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.policy(policy(SF_MGET)).pool_size(1)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut warm = Conn::connect(proxy.addr).await?;
    warm.call(&[b"PING"]).await?;
    // Long enough for the proxy to have read a command sent on a fresh
    // connection, on a loaded machine; well inside the pause.
    let settle = Duration::from_millis(150);
    // (the read, its reply before the write, after it)
    let reads: [Read<'_>; 2] = [
        (&[b"GET", b"p:ryw"], b"$3\r\nold\r\n", b"$3\r\nnew\r\n"),
        (
            &[b"MGET", b"p:other", b"p:ryw"],
            b"*2\r\n$1\r\nx\r\n$3\r\nold\r\n",
            b"*2\r\n$1\r\nx\r\n$3\r\nnew\r\n",
        ),
    ];
    for (read, before, after) in reads {
        direct.call(&[b"SET", b"p:other", b"x"]).await?;
        direct.call(&[b"SET", b"p:ryw", b"old"]).await?;
        let collapsed = stat(&mut warm, "collapsed_calls").await?;
        direct.call(&[b"CLIENT", b"PAUSE", b"1500", b"ALL"]).await?;
        let mut leader = Conn::connect(proxy.addr).await?;
        leader.send(&common::cmd(read)).await?;
        tokio::time::sleep(settle).await;
        let mut writer = Conn::connect(proxy.addr).await?;
        writer
            .send(&common::cmd(&[b"SET", b"p:ryw", b"new"]))
            .await?;
        tokio::time::sleep(settle).await;
        let mut reader = Conn::connect(proxy.addr).await?;
        reader.send(&common::cmd(read)).await?;
        let got = leader.read_frames(1).await?;
        ensure!(got == before, "leader, {}: {}", text(read[0]), show(&got));
        ensure!(writer.read_frames(1).await? == b"+OK\r\n");
        let got = reader.read_frames(1).await?;
        ensure!(
            got == after,
            "{} sent after the write joined an earlier flight: {}",
            text(read[0]),
            show(&got)
        );
        ensure!(stat(&mut warm, "collapsed_calls").await? == collapsed);
    }
    proxy.stop().await
}
