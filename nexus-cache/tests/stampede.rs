//! The stampede guard against a real redis-server: one filler per miss,
//! held readers and their bounds, leases shared by two proxies, lease
//! cancellation by invalidations, stale-while-revalidate, early refresh.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use common::{Conn, ProxyHandle, WAIT, show};
use nexus_cache::policy::Policy;
use nexus_testkit::RedisServer;

const NIL: &[u8] = b"$-1\r\n";

fn guarded(stampede: &str) -> Policy {
    Policy::from_yaml_str(&format!(
        "rules:\n  - commands: [GET]\n    keys: 's:*'\n    stampede: {stampede}\n  - commands: [SET]\n    keys: 's:*'\n    tags: [st]\n"
    ))
    .unwrap()
}

fn bulk(v: &str) -> Vec<u8> {
    format!("${}\r\n{v}\r\n", v.len()).into_bytes()
}

/// A `NEXUS.STATS` field.
async fn stat(addr: SocketAddr, name: &str) -> Result<u64> {
    common::stat(&mut Conn::connect(addr).await?, name).await
}

/// `n` clients GET `key` at once; the one that gets nil waits `fill_after`,
/// SETs `value` and reports `filler`. Returns every reply (nil replaced by
/// `filler`) and the slowest GET.
async fn stampede(
    addrs: &[SocketAddr],
    n: usize,
    key: &'static str,
    value: &'static str,
    fill_after: Duration,
) -> Result<(Vec<Vec<u8>>, Duration)> {
    let mut conns = Vec::new();
    for i in 0..n {
        conns.push(Conn::connect(addrs[i % addrs.len()]).await?);
    }
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for mut c in conns {
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let t = Instant::now();
            let got = c.call(&[b"GET", key.as_bytes()]).await?;
            let waited = t.elapsed();
            if got == NIL {
                tokio::time::sleep(fill_after).await;
                let ok = c.call(&[b"SET", key.as_bytes(), value.as_bytes()]).await?;
                ensure!(ok == b"+OK\r\n", "fill answered {}", show(&ok));
                return Ok((b"filler".to_vec(), waited));
            }
            Ok::<_, anyhow::Error>((got, waited))
        }));
    }
    let mut out = Vec::new();
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (got, waited) = tokio::time::timeout(WAIT, t).await???;
        out.push(got);
        slowest = slowest.max(waited);
    }
    Ok((out, slowest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reader_fills_the_others_get_its_value() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let (replies, _) = stampede(
        &[proxy.addr],
        30,
        "s:1",
        "fresh",
        Duration::from_millis(100),
    )
    .await?;
    let fillers = replies.iter().filter(|r| *r == b"filler").count();
    ensure!(fillers == 1, "{fillers} clients were sent to the database");
    ensure!(
        replies
            .iter()
            .all(|r| r == b"filler" || *r == bulk("fresh"))
    );
    ensure!(stat(proxy.addr, "leases_taken").await? == 1);
    ensure!(stat(proxy.addr, "held_filled").await? == 29);
    // The fill released its lease; the tag rule for SET still applied.
    let mut direct = Conn::connect(redis.addr()).await?;
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:1"]).await? == b":0\r\n");
    ensure!(direct.call(&[b"SISMEMBER", b"tag:st", b"s:1"]).await? == b":1\r\n");
    // Keys outside the rule are not guarded: every reader gets the nil.
    let mut a = Conn::connect(proxy.addr).await?;
    let mut b = Conn::connect(proxy.addr).await?;
    ensure!(a.call(&[b"GET", b"other"]).await? == NIL);
    ensure!(b.call(&[b"GET", b"other"]).await? == NIL);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_another_connection_answers_held_readers_and_ends_the_lease() -> Result<()> {
    let redis = RedisServer::start().await?;
    // Long bounds: on a loaded machine neither the lease nor the held
    // reader may run out before the write arrives.
    let policy = guarded("{ lock_ttl: 8s, wait_timeout: 8s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    // An application with a connection pool: the nil on one connection,
    // the SET on another. That SET is an ordinary write (the proxy cannot
    // tell it from a new write of the key): it cancels the lease and is
    // written, and the held readers get its value.
    let mut read = Conn::connect(proxy.addr).await?;
    let mut write = Conn::connect(proxy.addr).await?;
    ensure!(read.call(&[b"GET", b"s:12"]).await? == NIL);
    let mut held = Conn::connect(proxy.addr).await?;
    held.send(&common::cmd(&[b"GET", b"s:12"])).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(write.call(&[b"SET", b"s:12", b"pooled"]).await? == b"+OK\r\n");
    let got = held.read_frames(1).await?;
    if got != bulk("pooled") {
        anyhow::bail!(
            "the held reader got {} (timed out {}, handed over {}, overflow {})",
            show(&got),
            stat(proxy.addr, "held_timed_out").await?,
            stat(proxy.addr, "held_handed_over").await?,
            stat(proxy.addr, "held_overflow").await?
        );
    }
    // The write deleted the lease, and no new one was taken.
    let mut direct = Conn::connect(redis.addr()).await?;
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:12"]).await? == b":0\r\n");
    // After the fill, other writes are plain writes again.
    ensure!(write.call(&[b"SET", b"s:12", b"later"]).await? == b"+OK\r\n");
    ensure!(direct.call(&[b"GET", b"s:12"]).await? == bulk("later"));
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_filler_is_replaced_after_the_lease_expires() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 300ms, wait_timeout: 3s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:2"]).await? == NIL);
    let leased = Instant::now();
    drop(filler);
    // Two readers are held; after the lease expires the first becomes the
    // filler, and the second gets its value.
    let mut b = Conn::connect(proxy.addr).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    b.send(&common::cmd(&[b"GET", b"s:2"])).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.send(&common::cmd(&[b"GET", b"s:2"])).await?;
    ensure!(b.read_frames(1).await? == NIL);
    let handed = leased.elapsed();
    ensure!(
        handed >= Duration::from_millis(250) && handed < Duration::from_millis(1500),
        "handed over after {handed:?} (lock_ttl 300ms)"
    );
    ensure!(b.call(&[b"SET", b"s:2", b"second"]).await? == b"+OK\r\n");
    ensure!(c.read_frames(1).await? == bulk("second"));
    ensure!(stat(proxy.addr, "held_handed_over").await? == 1);
    ensure!(stat(proxy.addr, "held_filled").await? == 1);
    ensure!(stat(proxy.addr, "leases_taken").await? == 2);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filler_that_never_fills_holds_nobody_beyond_the_bound() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 30s, wait_timeout: 300ms, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:3"]).await? == NIL);
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            let t = Instant::now();
            let got = c.call(&[b"GET", b"s:3"]).await?;
            Ok::<_, anyhow::Error>((got, t.elapsed()))
        }));
    }
    for t in tasks {
        let (got, waited) = tokio::time::timeout(WAIT, t).await???;
        ensure!(got == NIL, "{}", show(&got));
        // The bound plus a round trip (and scheduling slack on shared cores).
        ensure!(
            waited >= Duration::from_millis(280) && waited < Duration::from_millis(800),
            "held {waited:?} with wait_timeout 300ms"
        );
    }
    ensure!(stat(proxy.addr, "held_timed_out").await? == 5);
    // The filler still holds its lease and may still fill.
    ensure!(filler.call(&[b"SET", b"s:3", b"late"]).await? == b"+OK\r\n");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_share_one_lease() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 100 }");
    let p1 = ProxyHandle::start(&redis.url(), |b| b.policy(policy.clone())).await?;
    let p2 = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let (replies, _) = stampede(
        &[p1.addr, p2.addr],
        40,
        "s:4",
        "shared",
        Duration::from_millis(100),
    )
    .await?;
    let fillers = replies.iter().filter(|r| *r == b"filler").count();
    ensure!(fillers == 1, "{fillers} clients were sent to the database");
    ensure!(
        replies
            .iter()
            .all(|r| r == b"filler" || *r == bulk("shared"))
    );
    let leases = stat(p1.addr, "leases_taken").await? + stat(p2.addr, "leases_taken").await?;
    ensure!(leases == 1, "{leases} leases");
    // The proxy without the filler saw the fill by polling Redis.
    ensure!(stat(p1.addr, "held_filled").await? > 0 && stat(p2.addr, "held_filled").await? > 0);
    p1.stop().await?;
    p2.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_cancels_the_lease_and_the_late_fill_is_not_written() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 2s, max_waiters: 100 }");
    let p1 = ProxyHandle::start(&redis.url(), |b| b.policy(policy.clone())).await?;
    let p2 = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;

    // DEL through the same proxy.
    let mut filler = Conn::connect(p1.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:5"]).await? == NIL);
    let mut admin = Conn::connect(p1.addr).await?;
    ensure!(admin.call(&[b"DEL", b"s:5", b"x"]).await? == b":0\r\n");
    ensure!(filler.call(&[b"SET", b"s:5", b"stale"]).await? == NIL);
    ensure!(direct.call(&[b"GET", b"s:5"]).await? == NIL);
    ensure!(stat(p1.addr, "leases_cancelled").await? == 1);
    ensure!(stat(p1.addr, "late_fills_dropped").await? == 1);
    // The next miss gets a fresh lease, and its fill is written.
    ensure!(filler.call(&[b"GET", b"s:5"]).await? == NIL);
    ensure!(filler.call(&[b"SET", b"s:5", b"fresh"]).await? == b"+OK\r\n");
    ensure!(direct.call(&[b"GET", b"s:5"]).await? == bulk("fresh"));

    // A tag invalidation through the other proxy cancels a lease of this one.
    let mut filler = Conn::connect(p1.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:6"]).await? == NIL);
    let mut other = Conn::connect(p2.addr).await?;
    ensure!(other.call(&[b"NEXUS.TAG", b"grp", b"s:6"]).await? == b":1\r\n");
    ensure!(other.call(&[b"NEXUS.INVALIDATE", b"grp"]).await? == b":0\r\n");
    ensure!(filler.call(&[b"SET", b"s:6", b"stale"]).await? == NIL);
    ensure!(direct.call(&[b"EXISTS", b"s:6"]).await? == b":0\r\n");
    ensure!(stat(p1.addr, "late_fills_dropped").await? == 2);

    // GETDEL cancels too.
    let mut filler = Conn::connect(p1.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:7"]).await? == NIL);
    ensure!(other.call(&[b"GETDEL", b"s:7"]).await? == NIL);
    ensure!(filler.call(&[b"SET", b"s:7", b"stale"]).await? == NIL);
    ensure!(direct.call(&[b"EXISTS", b"s:7"]).await? == b":0\r\n");
    p1.stop().await?;
    p2.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_fillers_late_fill_does_not_fill_the_next_lease() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 3s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let key: &[u8] = b"s:21";
    // F holds the lease; R is held behind it.
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", key]).await? == NIL);
    let mut reader = Conn::connect(proxy.addr).await?;
    reader.send(&common::cmd(&[b"GET", key])).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A deletion through the proxy cancels F's lease; R is handed the next.
    let mut admin = Conn::connect(proxy.addr).await?;
    ensure!(admin.call(&[b"DEL", key]).await? == b":0\r\n");
    let got = tokio::time::timeout(WAIT, reader.read_frames(1)).await??;
    ensure!(got == NIL, "the held reader got {}", show(&got));
    // F's late fill (read before the deletion) runs under F's own, gone,
    // lease: dropped, never written under R's lease.
    let late = filler.call(&[b"SET", key, b"stale"]).await?;
    ensure!(late == NIL, "the late fill answered {}", show(&late));
    ensure!(direct.call(&[b"GET", key]).await? == NIL);
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:21"]).await? == b":1\r\n");
    // A third client is held behind R's lease and gets R's fill.
    let mut third = Conn::connect(proxy.addr).await?;
    third.send(&common::cmd(&[b"GET", key])).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ensure!(reader.call(&[b"SET", key, b"fresh"]).await? == b"+OK\r\n");
    let got = tokio::time::timeout(WAIT, third.read_frames(1)).await??;
    ensure!(got == bulk("fresh"), "the third client got {}", show(&got));
    // Once R filled, F's repeated late fill is still dropped.
    ensure!(filler.call(&[b"SET", key, b"stale"]).await? == NIL);
    for c in [&mut filler, &mut reader, &mut third, &mut admin] {
        ensure!(c.call(&[b"GET", key]).await? == bulk("fresh"));
    }
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == 2);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_beyond_max_waiters_are_not_held() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 3 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:8"]).await? == NIL);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Conn::connect(proxy.addr).await?;
        c.send(&common::cmd(&[b"GET", b"s:8"])).await?;
        held.push(c);
    }
    // Let the three join; the fourth is over the bound.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = Conn::connect(proxy.addr).await?;
    let t = Instant::now();
    ensure!(extra.call(&[b"GET", b"s:8"]).await? == NIL);
    ensure!(t.elapsed() < Duration::from_millis(500));
    ensure!(stat(proxy.addr, "held_overflow").await? == 1);
    ensure!(filler.call(&[b"SET", b"s:8", b"v"]).await? == b"+OK\r\n");
    for mut c in held {
        ensure!(c.read_frames(1).await? == bulk("v"));
    }
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_the_last_value_within_its_bound() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy =
        guarded("{ lock_ttl: 5s, wait_timeout: 400ms, max_waiters: 100, serve_stale_for: 700ms }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut reader = Conn::connect(proxy.addr).await?;
    direct
        .call(&[b"SET", b"s:9", b"old", b"PX", b"100"])
        .await?;
    ensure!(reader.call(&[b"GET", b"s:9"]).await? == bulk("old"));
    let seen = Instant::now();
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Expired: one filler, and while it refills the others get the old
    // value at once.
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:9"]).await? == NIL);
    for _ in 0..5 {
        let t = Instant::now();
        ensure!(reader.call(&[b"GET", b"s:9"]).await? == bulk("old"));
        ensure!(
            t.elapsed() < Duration::from_millis(200),
            "stale read took {:?}",
            t.elapsed()
        );
    }
    ensure!(stat(proxy.addr, "stale_served").await? == 5);
    // Past serve_stale_for since Redis last returned it: held, not stale.
    let left = Duration::from_millis(750).saturating_sub(seen.elapsed());
    tokio::time::sleep(left).await;
    let t = Instant::now();
    ensure!(reader.call(&[b"GET", b"s:9"]).await? == NIL);
    ensure!(
        t.elapsed() >= Duration::from_millis(350),
        "answered after {:?}",
        t.elapsed()
    );
    ensure!(stat(proxy.addr, "stale_served").await? == 5);
    ensure!(stat(proxy.addr, "held_timed_out").await? == 1);

    // The fill is seen; then a deletion drops the copy: no stale value
    // survives an invalidation.
    ensure!(filler.call(&[b"SET", b"s:9", b"new"]).await? == b"+OK\r\n");
    ensure!(reader.call(&[b"GET", b"s:9"]).await? == bulk("new"));
    let mut admin = Conn::connect(proxy.addr).await?;
    ensure!(admin.call(&[b"DEL", b"s:9"]).await? == b":1\r\n");
    ensure!(filler.call(&[b"GET", b"s:9"]).await? == NIL);
    let t = Instant::now();
    ensure!(reader.call(&[b"GET", b"s:9"]).await? == NIL);
    ensure!(t.elapsed() >= Duration::from_millis(350));
    ensure!(stat(proxy.addr, "stale_served").await? == 5);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_hands_out_at_most_one_miss_at_a_time() -> Result<()> {
    let redis = RedisServer::start().await?;
    // beta 2: the refresh comes a few refill times (40 ms) before expiry,
    // leaving room for the refresher's fill on a loaded machine (with
    // beta 1 it came so late that a slow fill let the key expire).
    let policy =
        guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 1000, early_refresh: 2.0 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    const FILL: Duration = Duration::from_millis(40);
    // A first miss measures the refill time.
    let mut first = Conn::connect(proxy.addr).await?;
    ensure!(first.call(&[b"GET", b"s:10"]).await? == NIL);
    tokio::time::sleep(FILL).await;
    ensure!(first.call(&[b"SET", b"s:10", b"v", b"PX", b"500"]).await? == b"+OK\r\n");

    // Readers read continuously across two expiries; a nil means "refill".
    let outstanding = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicU64::new(0));
    let nils = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_millis(1200);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let addr = proxy.addr;
        let (outstanding, overlaps, nils, reads) = (
            Arc::clone(&outstanding),
            Arc::clone(&overlaps),
            Arc::clone(&nils),
            Arc::clone(&reads),
        );
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            while Instant::now() < deadline {
                let got = c.call(&[b"GET", b"s:10"]).await?;
                reads.fetch_add(1, Ordering::Relaxed);
                if got == NIL {
                    nils.fetch_add(1, Ordering::Relaxed);
                    if outstanding.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(FILL).await;
                    outstanding.store(false, Ordering::SeqCst);
                    let ok = c.call(&[b"SET", b"s:10", b"v", b"PX", b"500"]).await?;
                    ensure!(ok == b"+OK\r\n", "{}", show(&ok));
                } else {
                    ensure!(got == bulk("v"), "{}", show(&got));
                }
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT, t).await???;
    }
    let nils = nils.load(Ordering::Relaxed);
    let early = stat(proxy.addr, "early_refreshes").await?;
    ensure!(
        nils >= 1,
        "no early refresh in {} reads",
        reads.load(Ordering::Relaxed)
    );
    ensure!(overlaps.load(Ordering::Relaxed) == 0, "two misses at once");
    // Every nil was an early refresh: the key never expired, nobody was held.
    ensure!(early == nils, "{nils} nils, {early} early refreshes");
    ensure!(stat(proxy.addr, "held_readers").await? == 0);
    ensure!(stat(proxy.addr, "leases_taken").await? == nils + 1);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_reads_keep_the_pipeline_order() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut filler = Conn::connect(proxy.addr).await?;
    ensure!(filler.call(&[b"GET", b"s:11"]).await? == NIL);
    // A pipeline with a held read between two plain commands: the replies
    // come back in command order once the fill arrives.
    let mut c = Conn::connect(proxy.addr).await?;
    let mut pipeline = common::cmd(&[b"SET", b"plain", b"1"]);
    pipeline.extend(common::cmd(&[b"GET", b"s:11"]));
    pipeline.extend(common::cmd(&[b"GET", b"plain"]));
    pipeline.extend(common::cmd(&[b"PING"]));
    c.send(&pipeline).await?;
    tokio::time::sleep(Duration::from_millis(150)).await;
    ensure!(filler.call(&[b"SET", b"s:11", b"filled"]).await? == b"+OK\r\n");
    let got = c.read_frames(4).await?;
    let want = [
        &b"+OK\r\n"[..],
        &bulk("filled"),
        b"$1\r\n1\r\n",
        b"+PONG\r\n",
    ]
    .concat();
    ensure!(got == want, "{}", show(&got));
    proxy.stop().await
}

/// A write through the proxy that touches guarded key `{k}` (`{o}` is
/// another key): the commands one client connection sends, and the
/// commands sent straight to Redis first.
struct WriteKind {
    name: &'static str,
    prepare: &'static [&'static [&'static str]],
    writes: &'static [&'static [&'static str]],
}

const SET_SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1])";

/// Every kind of write the guard must hear about. `none` is the control:
/// no write, so the stale copy is served and the fill is written.
const WRITE_KINDS: &[WriteKind] = &[
    WriteKind {
        name: "none",
        prepare: &[],
        writes: &[],
    },
    WriteKind {
        name: "set-other-connection",
        prepare: &[],
        writes: &[&["SET", "{k}", "new"]],
    },
    WriteKind {
        name: "mset",
        prepare: &[],
        writes: &[&["MSET", "{o}", "1", "{k}", "new"]],
    },
    WriteKind {
        name: "msetnx",
        prepare: &[&["DEL", "{k}"]],
        writes: &[&["MSETNX", "{o}", "1", "{k}", "new"]],
    },
    WriteKind {
        name: "rename-from",
        prepare: &[],
        writes: &[&["RENAME", "{k}", "{o}"]],
    },
    WriteKind {
        name: "rename-to",
        prepare: &[&["SET", "{o}", "new"]],
        writes: &[&["RENAME", "{o}", "{k}"]],
    },
    WriteKind {
        name: "renamenx-to",
        prepare: &[&["SET", "{o}", "new"], &["DEL", "{k}"]],
        writes: &[&["RENAMENX", "{o}", "{k}"]],
    },
    WriteKind {
        name: "copy-to",
        prepare: &[&["SET", "{o}", "new"]],
        writes: &[&["COPY", "{o}", "{k}", "REPLACE"]],
    },
    WriteKind {
        name: "del-several",
        prepare: &[],
        writes: &[&["DEL", "{o}", "{k}"]],
    },
    WriteKind {
        name: "unlink-several",
        prepare: &[],
        writes: &[&["UNLINK", "{o}", "{k}"]],
    },
    WriteKind {
        name: "eval",
        prepare: &[],
        writes: &[&["EVAL", SET_SCRIPT, "1", "{k}", "new"]],
    },
    WriteKind {
        name: "evalsha",
        prepare: &[&["SCRIPT", "LOAD", SET_SCRIPT]],
        writes: &[&["EVALSHA", "{sha}", "1", "{k}", "new"]],
    },
    WriteKind {
        name: "fcall",
        prepare: &[&[
            "FUNCTION",
            "LOAD",
            "REPLACE",
            "#!lua name=guardtest\nredis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
        ]],
        writes: &[&["FCALL", "setit", "1", "{k}", "new"]],
    },
    WriteKind {
        name: "pinned-set",
        prepare: &[],
        writes: &[&["CLIENT", "SETNAME", "writer"], &["SET", "{k}", "new"]],
    },
    WriteKind {
        name: "pinned-mset",
        prepare: &[],
        writes: &[
            &["CLIENT", "SETNAME", "writer"],
            &["MSET", "{k}", "new", "{o}", "1"],
        ],
    },
    WriteKind {
        name: "multi-exec",
        prepare: &[],
        writes: &[
            &["MULTI"],
            &["SET", "{k}", "new"],
            &["INCR", "{o}"],
            &["EXEC"],
        ],
    },
    WriteKind {
        name: "bitop",
        prepare: &[&["SET", "{o}", "new"]],
        writes: &[&["BITOP", "OR", "{k}", "{o}"]],
    },
    WriteKind {
        name: "swapdb",
        prepare: &[],
        writes: &[&["SWAPDB", "0", "1"]],
    },
    WriteKind {
        name: "flushdb",
        prepare: &[],
        writes: &[&["FLUSHDB"]],
    },
    WriteKind {
        name: "flushall",
        prepare: &[],
        writes: &[&["FLUSHALL"]],
    },
];

/// Runs `kind`'s preparation on `direct` and its writes on a new proxy
/// connection, with `{k}`, `{o}` and `{sha}` (the last `SCRIPT LOAD`'s
/// reply) replaced.
async fn write(kind: &WriteKind, proxy: SocketAddr, direct: &mut Conn, k: &str) -> Result<()> {
    let o = format!("{k}:other");
    let mut sha = String::new();
    let fill = |arg: &str, sha: &str| {
        arg.replace("{k}", k)
            .replace("{o}", &o)
            .replace("{sha}", sha)
    };
    for c in kind.prepare {
        let args: Vec<String> = c.iter().map(|a| fill(a, &sha)).collect();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let got = direct.call(&args).await?;
        ensure!(!got.starts_with(b"-"), "{}: {}", kind.name, show(&got));
        if let Some(rest) = got.strip_prefix(b"$40\r\n") {
            sha = String::from_utf8_lossy(&rest[..40]).into_owned();
        }
    }
    let mut writer = Conn::connect(proxy).await?;
    for c in kind.writes {
        let args: Vec<String> = c.iter().map(|a| fill(a, &sha)).collect();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        writer.call(&args).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_drops_the_stale_copy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy =
        guarded("{ lock_ttl: 5s, wait_timeout: 300ms, max_waiters: 100, serve_stale_for: 60s }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    for kind in WRITE_KINDS {
        let key = format!("s:copy:{}", kind.name);
        let k = key.as_bytes();
        // A hit keeps the stale copy.
        direct.call(&[b"SET", k, b"old"]).await?;
        let mut reader = Conn::connect(proxy.addr).await?;
        ensure!(reader.call(&[b"GET", k]).await? == bulk("old"));
        write(kind, proxy.addr, &mut direct, &key).await?;
        // The key goes missing behind the proxy's back, and a refill starts.
        direct.call(&[b"DEL", k]).await?;
        let mut filler = Conn::connect(proxy.addr).await?;
        let got = filler.call(&[b"GET", k]).await?;
        ensure!(got == NIL, "{}: the filler got {}", kind.name, show(&got));
        // A reader now gets the stale copy only if no write dropped it.
        let got = reader.call(&[b"GET", k]).await?;
        if kind.name == "none" {
            ensure!(got == bulk("old"), "control: {}", show(&got));
        } else {
            ensure!(
                got == NIL,
                "{}: served {} after the write",
                kind.name,
                show(&got)
            );
        }
        ensure!(filler.call(&[b"SET", k, b"refilled"]).await? == b"+OK\r\n");
    }
    ensure!(stat(proxy.addr, "stale_served").await? == 1);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_write_cancels_the_lease() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut dropped = 0;
    for kind in WRITE_KINDS {
        let key = format!("s:lease:{}", kind.name);
        let k = key.as_bytes();
        let lease = format!("nexus:lease:{key}");
        let mut filler = Conn::connect(proxy.addr).await?;
        ensure!(filler.call(&[b"GET", k]).await? == NIL);
        let fillers = direct.call(&[b"GET", lease.as_bytes()]).await?;
        ensure!(fillers != NIL, "{}: no lease", kind.name);
        // A reader held behind the filler.
        let mut held = Conn::connect(proxy.addr).await?;
        held.send(&common::cmd(&[b"GET", k])).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        write(kind, proxy.addr, &mut direct, &key).await?;
        if kind.name == "none" {
            ensure!(direct.call(&[b"EXISTS", lease.as_bytes()]).await? == b":1\r\n");
            ensure!(filler.call(&[b"SET", k, b"filled"]).await? == b"+OK\r\n");
            ensure!(held.read_frames(1).await? == bulk("filled"));
            continue;
        }
        // The lease is gone before the write's reply came back...
        let left = direct.call(&[b"GET", lease.as_bytes()]).await?;
        // ...unless the held reader already took the next one (the write
        // deleted the key): then it holds it, not the filler.
        let after = direct.call(&[b"GET", k]).await?;
        if after == NIL {
            ensure!(
                held.read_frames(1).await? == NIL,
                "{}: the held reader was not made the next filler",
                kind.name
            );
        } else if left == NIL {
            let got = held.read_frames(1).await?;
            ensure!(
                got == after,
                "{}: held reader got {}",
                kind.name,
                show(&got)
            );
        } else {
            // A write whose lease deletion Redis ran apart from it (a
            // pinned write: the deletion goes first, on a pool
            // connection) lets the held reader take a new lease in
            // between ("Back to back, not atomic"): then it is the next
            // filler, and the filler's lease is gone all the same.
            ensure!(
                left != fillers,
                "{}: the filler's lease left {}",
                kind.name,
                show(&left)
            );
            let got = held.read_frames(1).await?;
            ensure!(
                got == NIL,
                "{}: a lease {} is left, yet the held reader got {}",
                kind.name,
                show(&left),
                show(&got)
            );
        }
        // ...so the filler's late fill is dropped, and the write stands.
        let late = filler.call(&[b"SET", k, b"stale"]).await?;
        ensure!(
            late == NIL,
            "{}: the late fill answered {}",
            kind.name,
            show(&late)
        );
        dropped += 1;
        ensure!(
            direct.call(&[b"GET", k]).await? == after,
            "{}: the late fill was written",
            kind.name
        );
    }
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == dropped);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_from_a_connection_without_a_lease_is_never_dropped() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 2s, max_waiters: 100 }");
    let p1 = ProxyHandle::start(&redis.url(), |b| b.policy(policy.clone())).await?;
    let p2 = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let key: &[u8] = b"s:30";
    let mut filler = Conn::connect(p1.addr).await?;
    ensure!(filler.call(&[b"GET", key]).await? == NIL);
    // Another proxy deletes the key: the lease is gone in Redis, and p1
    // does not know.
    let mut other = Conn::connect(p2.addr).await?;
    ensure!(other.call(&[b"DEL", key]).await? == b":0\r\n");
    // A client of p1 that holds no lease writes the key: written, as
    // without the guard.
    let mut writer = Conn::connect(p1.addr).await?;
    let got = writer.call(&[b"SET", key, b"written"]).await?;
    ensure!(got == b"+OK\r\n", "the write answered {}", show(&got));
    ensure!(direct.call(&[b"GET", key]).await? == bulk("written"));
    // The filler's fill is late (a deletion ran since its nil): dropped,
    // and the write stands.
    ensure!(filler.call(&[b"SET", key, b"late"]).await? == NIL);
    ensure!(direct.call(&[b"GET", key]).await? == bulk("written"));
    ensure!(stat(p1.addr, "late_fills_dropped").await? == 1);
    p1.stop().await?;
    p2.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_after_its_lease_expired_is_written_unless_a_write_ran_since() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 300ms, wait_timeout: 3s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let key: &[u8] = b"s:31";
    // F's lease expires; the held reader R gets the next one.
    let mut f = Conn::connect(proxy.addr).await?;
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    let mut r = Conn::connect(proxy.addr).await?;
    r.send(&common::cmd(&[b"GET", key])).await?;
    ensure!(r.read_frames(1).await? == NIL, "R was not handed the lease");
    // Nothing wrote the key since F's lease was granted: F's slow fill is
    // not stale, so it is written (without taking R's lease away).
    let got = f.call(&[b"SET", key, b"slow"]).await?;
    ensure!(got == b"+OK\r\n", "the slow fill answered {}", show(&got));
    ensure!(direct.call(&[b"GET", key]).await? == bulk("slow"));
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:31"]).await? == b":1\r\n");
    // R's fill, under its own live lease, is written too.
    ensure!(r.call(&[b"SET", key, b"next"]).await? == b"+OK\r\n");
    ensure!(direct.call(&[b"GET", key]).await? == bulk("next"));
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:31"]).await? == b":0\r\n");
    // A write ran after the grant (here once the lease had expired): the
    // late fill may predate it, so it is dropped.
    let key: &[u8] = b"s:32";
    let mut f = Conn::connect(proxy.addr).await?;
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut admin = Conn::connect(proxy.addr).await?;
    ensure!(admin.call(&[b"DEL", key]).await? == b":0\r\n");
    ensure!(f.call(&[b"SET", key, b"stale"]).await? == NIL);
    ensure!(direct.call(&[b"EXISTS", key]).await? == b":0\r\n");
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == 1);
    proxy.stop().await
}

/// The members of a key's fresh set, whatever its Redis type.
async fn fresh_members(direct: &mut Conn, key: &str) -> Result<i64> {
    let script = b"local t = redis.call('TYPE', KEYS[1]).ok \
        if t == 'set' then return redis.call('SCARD', KEYS[1]) end \
        if t == 'zset' then return redis.call('ZCARD', KEYS[1]) end \
        return 0";
    let fresh = format!("nexus:fresh:{key}");
    let got = direct
        .call(&[b"EVAL", script, b"1", fresh.as_bytes()])
        .await?;
    let s = String::from_utf8_lossy(&got);
    s.trim_start_matches(':')
        .trim_end()
        .parse()
        .with_context(|| format!("fresh set size: {}", show(&got)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fresh_set_stays_bounded_when_fillers_never_fill() -> Result<()> {
    // A key the database does not have: every filler finds nothing and
    // never SETs. Each lease expires and goes to the next reader, for as
    // long as the key is read; the fresh set must not keep every token.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 40ms, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let rounds = 30;
    for _ in 0..rounds {
        // Held until the previous filler's lease expires, then the filler.
        ensure!(c.call(&[b"GET", b"s:absent"]).await? == NIL);
    }
    let taken = stat(proxy.addr, "leases_taken").await?;
    ensure!(taken >= rounds / 2, "only {taken} leases taken");
    let n = fresh_members(&mut direct, "s:absent").await?;
    // Tokens of leases granted within the fresh set's window (3 × lock_ttl)
    // at most, not one per lease ever granted.
    ensure!(
        n <= 5,
        "{n} tokens kept in the fresh set after {taken} leases"
    );
    // The set still expires.
    let pttl = direct.call(&[b"PTTL", b"nexus:fresh:s:absent"]).await?;
    ensure!(pttl != b":-1\r\n", "the fresh set has no TTL");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_script_error_is_not_a_readers_answer() -> Result<()> {
    // Redis refuses the lease script (here: out of memory, so the lease's
    // SET is denied; likewise READONLY, NOPERM, ...). A GET of a missing
    // key still answers nil there: the reader gets the nil at once, as
    // without the guard, never the script's error, and is not held.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 5s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    ensure!(direct.call(&[b"SET", b"ballast", b"x"]).await? == b"+OK\r\n");
    ensure!(
        direct
            .call(&[b"CONFIG", b"SET", b"maxmemory", b"1"])
            .await?
            == b"+OK\r\n"
    );
    let mut c = Conn::connect(proxy.addr).await?;
    let t = Instant::now();
    let got = c.call(&[b"GET", b"s:oom"]).await;
    let waited = t.elapsed();
    ensure!(
        direct
            .call(&[b"CONFIG", b"SET", b"maxmemory", b"0"])
            .await?
            == b"+OK\r\n"
    );
    let got = got?;
    ensure!(got == NIL, "a GET of a missing key answered {}", show(&got));
    ensure!(waited < Duration::from_secs(2), "held for {waited:?}");
    // A GET's own error still reaches the reader as it is.
    ensure!(direct.call(&[b"HSET", b"s:hash", b"f", b"v"]).await? == b":1\r\n");
    let got = c.call(&[b"GET", b"s:hash"]).await?;
    ensure!(
        got.starts_with(b"-WRONGTYPE"),
        "GET of a hash: {}",
        show(&got)
    );
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_later_writes_after_its_fill_are_ordinary_writes() -> Result<()> {
    // F's lease expires and goes to R; F's slow fill is written (no write
    // since its grant). F's next SETs are new writes of the key, not fills:
    // they must be written, not checked again against F's used token.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 300ms, wait_timeout: 3s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let key: &[u8] = b"s:41";
    let mut f = Conn::connect(proxy.addr).await?;
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    let mut r = Conn::connect(proxy.addr).await?;
    r.send(&common::cmd(&[b"GET", key])).await?;
    ensure!(r.read_frames(1).await? == NIL, "R was not handed the lease");
    ensure!(f.call(&[b"SET", key, b"slow"]).await? == b"+OK\r\n");
    for v in [&b"update-1"[..], b"update-2"] {
        let got = f.call(&[b"SET", key, v]).await?;
        ensure!(got == b"+OK\r\n", "F's later SET answered {}", show(&got));
        let now = direct.call(&[b"GET", key]).await?;
        ensure!(
            now == bulk(std::str::from_utf8(v)?),
            "Redis holds {}",
            show(&now)
        );
    }
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == 0);
    // The same after a fill of the current lease.
    let key: &[u8] = b"s:42";
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    ensure!(f.call(&[b"SET", key, b"filled"]).await? == b"+OK\r\n");
    ensure!(f.call(&[b"SET", key, b"again"]).await? == b"+OK\r\n");
    ensure!(direct.call(&[b"GET", key]).await? == bulk("again"));
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_whose_own_set_answers_nil_is_not_a_dropped_fill() -> Result<()> {
    // The filler's `SET ... NX` finds the key written meanwhile (directly
    // on Redis): Redis answers nil, the fill ran under its lease. That is
    // `SET NX`'s own answer, not a fill the guard dropped; likewise a
    // `SET ... GET` of a missing key.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut f = Conn::connect(proxy.addr).await?;
    ensure!(f.call(&[b"GET", b"s:51"]).await? == NIL);
    ensure!(direct.call(&[b"SET", b"s:51", b"direct"]).await? == b"+OK\r\n");
    ensure!(f.call(&[b"SET", b"s:51", b"mine", b"NX"]).await? == NIL);
    ensure!(direct.call(&[b"GET", b"s:51"]).await? == bulk("direct"));
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:51"]).await? == b":0\r\n");
    ensure!(f.call(&[b"GET", b"s:52"]).await? == NIL);
    ensure!(f.call(&[b"SET", b"s:52", b"v", b"GET"]).await? == NIL);
    ensure!(direct.call(&[b"GET", b"s:52"]).await? == bulk("v"));
    let dropped = stat(proxy.addr, "late_fills_dropped").await?;
    ensure!(dropped == 0, "{dropped} fills counted as dropped");
    // A fill the guard does drop still answers the client a plain nil.
    ensure!(f.call(&[b"GET", b"s:53"]).await? == NIL);
    let mut admin = Conn::connect(proxy.addr).await?;
    ensure!(admin.call(&[b"DEL", b"s:53"]).await? == b":0\r\n");
    let got = f.call(&[b"SET", b"s:53", b"stale"]).await?;
    ensure!(got == NIL, "the dropped fill answered {}", show(&got));
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == 1);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guards_scripts_are_loaded_again_after_script_flush() -> Result<()> {
    // Every guard script (lease, fill, early-refresh grant) meets NOSCRIPT
    // after `SCRIPT FLUSH` and is loaded again; nothing is lost or doubled.
    let redis = RedisServer::start().await?;
    let policy =
        guarded("{ lock_ttl: 2s, wait_timeout: 2s, max_waiters: 100, early_refresh: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    async fn flush(d: &mut Conn) -> Result<()> {
        ensure!(d.call(&[b"SCRIPT", b"FLUSH"]).await? == b"+OK\r\n");
        Ok(())
    }
    for round in 0..2 {
        let key = format!("s:noscript:{round}");
        let k = key.as_bytes();
        let mut f = Conn::connect(proxy.addr).await?;
        ensure!(f.call(&[b"GET", k]).await? == NIL);
        flush(&mut direct).await?;
        let mut held = Conn::connect(proxy.addr).await?;
        held.send(&common::cmd(&[b"GET", k])).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        flush(&mut direct).await?;
        let got = f.call(&[b"SET", k, b"filled", b"PX", b"1000"]).await?;
        ensure!(
            got == b"+OK\r\n",
            "round {round}: the fill answered {}",
            show(&got)
        );
        ensure!(held.read_frames(1).await? == bulk("filled"));
        let lease = format!("nexus:lease:{key}");
        ensure!(direct.call(&[b"EXISTS", lease.as_bytes()]).await? == b":0\r\n");
        // An early refresh (beta 100, a refill of about 100 ms, 1 s left:
        // about 9 hits in 10 refresh) takes its lease through a reloaded
        // script too.
        flush(&mut direct).await?;
        let mut r = Conn::connect(proxy.addr).await?;
        let mut refreshed = false;
        for _ in 0..30 {
            let got = r.call(&[b"GET", k]).await?;
            if got == NIL {
                refreshed = true;
                break;
            }
            ensure!(got == bulk("filled"), "GET answered {}", show(&got));
        }
        ensure!(refreshed, "no early refresh");
        ensure!(direct.call(&[b"EXISTS", lease.as_bytes()]).await? == b":1\r\n");
        flush(&mut direct).await?;
        ensure!(r.call(&[b"SET", k, b"refreshed"]).await? == b"+OK\r\n");
        ensure!(direct.call(&[b"GET", k]).await? == bulk("refreshed"));
    }
    ensure!(stat(proxy.addr, "early_refreshes").await? == 2);
    ensure!(stat(proxy.addr, "late_fills_dropped").await? == 0);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_write_of_many_guarded_keys_cancels_every_lease() -> Result<()> {
    // A pinned session (a RESP3 client, a transaction...) deletes more
    // guarded keys in one go than the proxy remembers per write (256): the
    // lease of the last one, held by a filler, must be cancelled in Redis
    // as well, so that filler's late fill (read before the deletion) is
    // not written back over it.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let keys: Vec<String> = (0..300).map(|i| format!("s:many:{i}")).collect();
    let last = keys[299].as_bytes();
    let mut pinned = Conn::connect(proxy.addr).await?;
    ensure!(pinned.call(&[b"CLIENT", b"SETNAME", b"bulk"]).await? == b"+OK\r\n");
    let del: Vec<&[u8]> = std::iter::once(&b"DEL"[..])
        .chain(keys.iter().map(|k| k.as_bytes()))
        .collect();
    // One command of 300 keys; then the same inside MULTI (one DEL per
    // key, cancelled when EXEC is forwarded).
    for multi in [false, true] {
        let mut f = Conn::connect(proxy.addr).await?;
        ensure!(f.call(&[b"GET", last]).await? == NIL);
        if multi {
            ensure!(pinned.call(&[b"MULTI"]).await? == b"+OK\r\n");
            for k in &keys {
                ensure!(pinned.call(&[b"DEL", k.as_bytes()]).await? == b"+QUEUED\r\n");
            }
            let exec = pinned.call(&[b"EXEC"]).await?;
            ensure!(
                exec.starts_with(b"*300\r\n"),
                "EXEC answered {}",
                show(&exec)
            );
        } else {
            ensure!(pinned.call(&del).await? == b":0\r\n");
        }
        let lease = format!("nexus:lease:{}", keys[299]);
        let left = direct.call(&[b"EXISTS", lease.as_bytes()]).await?;
        let got = f.call(&[b"SET", last, b"stale"]).await?;
        ensure!(
            got == NIL,
            "multi: {multi}: the late fill answered {} (lease left: {})",
            show(&got),
            show(&left)
        );
        ensure!(direct.call(&[b"EXISTS", last]).await? == b":0\r\n");
    }
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_write_in_another_database_does_not_cancel_the_pools_lease() -> Result<()> {
    // A session that SELECTed another database writes a key of the same
    // name there: the pool database's lease is not its business, and the
    // filler there must still fill. Back in the pool's database (SELECT
    // answered), its writes cancel leases again.
    let redis = RedisServer::start().await?;
    let policy = guarded("{ lock_ttl: 5s, wait_timeout: 2s, max_waiters: 100 }");
    let proxy = ProxyHandle::start(&redis.url(), |b| b.policy(policy)).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let key: &[u8] = b"s:db";
    let mut other = Conn::connect(proxy.addr).await?;
    ensure!(other.call(&[b"SELECT", b"1"]).await? == b"+OK\r\n");
    let mut f = Conn::connect(proxy.addr).await?;
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    ensure!(other.call(&[b"SET", key, b"db1"]).await? == b"+OK\r\n");
    ensure!(other.call(&[b"DEL", key]).await? == b":1\r\n");
    ensure!(direct.call(&[b"EXISTS", b"nexus:lease:s:db"]).await? == b":1\r\n");
    let got = f.call(&[b"SET", key, b"filled"]).await?;
    ensure!(
        got == b"+OK\r\n",
        "the pool db's fill answered {}",
        show(&got)
    );
    ensure!(direct.call(&[b"GET", key]).await? == bulk("filled"));
    // Back in the pool's database: a write cancels the lease.
    ensure!(direct.call(&[b"DEL", key]).await? == b":1\r\n");
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    ensure!(other.call(&[b"SELECT", b"0"]).await? == b"+OK\r\n");
    ensure!(other.call(&[b"DEL", key]).await? == b":0\r\n");
    ensure!(f.call(&[b"SET", key, b"late"]).await? == NIL);
    // A SELECT Redis refuses leaves the database as it was (the pool's).
    ensure!(f.call(&[b"GET", key]).await? == NIL);
    let refused = other.call(&[b"SELECT", b"100000"]).await?;
    ensure!(
        refused.starts_with(b"-"),
        "SELECT 100000: {}",
        show(&refused)
    );
    ensure!(other.call(&[b"DEL", key]).await? == b":0\r\n");
    ensure!(f.call(&[b"SET", key, b"late"]).await? == NIL);
    proxy.stop().await
}
