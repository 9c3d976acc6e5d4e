//! Concurrency, hostile input, limits and shutdown.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Conn, ProxyHandle, WAIT, cmd, command_calls, show};
use nexus_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_clients_never_see_each_others_replies() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.pool_size(2)).await?;
    let mut tasks = Vec::new();
    for client in 0..200u32 {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await?;
            for round in 0..20u32 {
                // A pipeline of writes and reads of this client's own keys.
                let mut script = Vec::new();
                let mut expected = Vec::new();
                for j in 0..5u32 {
                    let key = format!("c{client}:k{j}");
                    let val = format!("v{client}:{round}:{j}");
                    script.extend(cmd(&[b"SET", key.as_bytes(), val.as_bytes()]));
                    script.extend(cmd(&[b"GET", key.as_bytes()]));
                    expected.extend(b"+OK\r\n");
                    expected.extend(format!("${}\r\n{val}\r\n", val.len()).into_bytes());
                }
                c.send(&script).await?;
                let got = c.read_frames(10).await?;
                ensure!(
                    got == expected,
                    "client {client} round {round}: {}",
                    show(&got)
                );
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        tokio::time::timeout(WAIT * 3, t)
            .await
            .context("client stuck")???;
    }
    let stats = proxy.metrics.snapshot();
    assert_eq!(stats.commands, 200 * 20 * 10);
    assert_eq!(stats.total_connections, 200);
    assert!(
        stats.upstream_batches < stats.commands,
        "pipelines must be batched"
    );
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_close_and_others_keep_working() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.max_bulk_len(1024 * 1024)).await?;
    let mut bystander = Conn::connect(proxy.addr).await?;
    let bad: &[&[u8]] = &[
        b"*abc\r\n",
        b"*-5\r\n",
        b"*1\r\n$-2\r\n",
        b"*2\r\n$3\r\nGET\r\n$99999999999999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n$2000000\r\n", // over the 1 MiB limit: rejected at the header
        b"*1\r\n:1\r\n",
        b"$3\r\nGET\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXY", // payload not followed by CRLF
        b"*1\r\n$3\r\nGET\r\r",          // CR without LF
        b"*1\r\n$\r\n",                  // empty length
        b"GET \"unterminated\r\n",
    ];
    for input in bad {
        let mut c = Conn::connect(proxy.addr).await?;
        // A valid command first: its reply must still arrive, in order.
        let mut script = cmd(&[b"PING"]);
        script.extend_from_slice(input);
        c.send(&script).await?;
        let rest = c
            .read_to_eof()
            .await
            .with_context(|| format!("hung on {}", show(input)))?;
        let text = String::from_utf8_lossy(&rest).to_string();
        ensure!(
            text.starts_with("+PONG\r\n-ERR Protocol error: "),
            "{} -> {text:?}",
            show(input)
        );
        // Fresh clients and the bystander are unaffected.
        let mut fresh = Conn::connect(proxy.addr).await?;
        assert_eq!(fresh.call(&[b"PING"]).await?, b"+PONG\r\n");
        assert_eq!(
            bystander.call(&[b"ECHO", b"still here"]).await?,
            b"$10\r\nstill here\r\n"
        );
    }
    assert!(proxy.metrics.snapshot().proxy_errors >= bad.len() as u64);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_frame_is_cleaned_up() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    for partial in [
        &b"*3\r\n$3\r\nSET\r\n$1\r\nk"[..],
        b"*2\r\n$3\r\nGET\r\n$100\r\nabc",
        b"GET unfinished",
    ] {
        let mut c = Conn::connect(proxy.addr).await?;
        let mut script = cmd(&[b"SET", b"x", b"1"]);
        script.extend_from_slice(partial);
        c.send(&script).await?;
        assert_eq!(c.read_frames(1).await?, b"+OK\r\n");
        drop(c);
    }
    // Gone clients are accounted for, and the proxy serves new ones.
    let deadline = tokio::time::Instant::now() + WAIT;
    while proxy.metrics.snapshot().connected_clients != 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "clients not cleaned up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"GET", b"k"]).await?, b"$-1\r\n");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_admin_and_unknown_nexus_commands() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(
        c.call(&[b"shutdown", b"nosave"]).await?,
        b"-ERR nexus: 'SHUTDOWN' cannot be used through the proxy\r\n"
    );
    assert_eq!(
        c.call(&[b"PSYNC", b"?", b"-1"]).await?,
        b"-ERR nexus: 'PSYNC' cannot be used through the proxy\r\n"
    );
    let unknown = String::from_utf8(c.call(&[b"NEXUS.NOPE"]).await?)?;
    assert!(unknown.starts_with("-ERR nexus: unknown admin command 'NEXUS.NOPE'"));
    // Redis is still up and the connection still usable.
    assert_eq!(redis.cli(["PING"]).await?, "PONG");
    assert_eq!(
        c.call(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"]).await?,
        b"+OK\r\n"
    );
    let stats = String::from_utf8(c.call(&[b"NEXUS.STATS"]).await?)?;
    assert!(
        stats.starts_with('*') && stats.contains("\r\n$8\r\ncommands\r\n:5\r\n"),
        "{stats:?}"
    );
    assert!(
        stats.contains("$17\r\nconnected_clients\r\n:1\r\n"),
        "{stats:?}"
    );
    // Refused inside a pinned session too (Redis answers the replaced command).
    c.call(&[b"MULTI"]).await?;
    let queued = String::from_utf8(c.call(&[b"SHUTDOWN"]).await?)?;
    assert!(
        queued.starts_with("-ERR unknown command 'NEXUS-REFUSED:SHUTDOWN'"),
        "{queued:?}"
    );
    assert!(String::from_utf8(c.call(&[b"EXEC"]).await?)?.starts_with("-EXECABORT"));
    assert_eq!(redis.cli(["PING"]).await?, "PONG");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_pinned_limits() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.max_clients(2).max_pinned(1)).await?;
    let mut a = Conn::connect(proxy.addr).await?;
    let mut b = Conn::connect(proxy.addr).await?;
    assert_eq!(a.call(&[b"PING"]).await?, b"+PONG\r\n");
    let mut third = Conn::connect(proxy.addr).await?;
    assert_eq!(
        third.read_to_eof().await?,
        b"-ERR max number of clients reached\r\n"
    );
    assert_eq!(a.call(&[b"MULTI"]).await?, b"+OK\r\n");
    let refused = String::from_utf8(b.call(&[b"WATCH", b"k"]).await?)?;
    assert!(
        refused.starts_with("-ERR nexus: too many clients hold a dedicated upstream connection")
    );
    assert_eq!(b.call(&[b"GET", b"k"]).await?, b"$-1\r\n");
    drop(a);
    // The slot frees up once the pinned client leaves.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut c = Conn::connect(proxy.addr).await?;
        c.send(&cmd(&[b"PING"])).await?;
        if c.read_frames(1).await.is_ok_and(|r| r == b"+PONG\r\n") {
            assert_eq!(c.call(&[b"MULTI"]).await?, b"+OK\r\n");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "client slot never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.metrics.snapshot().rejected_connections >= 1);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_replies() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let addr = proxy.addr;
    let mut c = Conn::connect(addr).await?;
    // A slow command in flight when shutdown starts still gets its reply.
    let mut script = cmd(&[b"SET", b"k", b"v"]);
    script.extend(cmd(&[b"EVAL", b"local t = redis.call('TIME') while true do local n = redis.call('TIME') if (n[1] - t[1]) * 1000000 + n[2] - t[2] > 300000 then break end end return 'slow'", b"0"]));
    c.send(&script).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.shutdown.cancel();
    assert_eq!(c.read_frames(2).await?, b"+OK\r\n$4\r\nslow\r\n");
    assert_eq!(c.read_to_eof().await?, b"");
    tokio::time::timeout(WAIT, proxy.task).await??;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener must be closed"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_client_still_gets_its_replies() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    let mut script = Vec::new();
    for i in 0..100 {
        script.extend(cmd(&[b"ECHO", format!("m{i}").as_bytes()]));
    }
    c.send(&script).await?;
    c.stream.shutdown().await?;
    let out = c.read_to_eof().await?;
    assert_eq!(
        out.iter().filter(|b| **b == b'$').count(),
        100,
        "{}",
        show(&out)
    );
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_pinned_sessions_promptly() -> Result<()> {
    let redis = RedisServer::start().await?;
    // A grace period far longer than the bound asserted below.
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.shutdown_grace(Duration::from_secs(30))).await?;
    let mut sub = Conn::connect(proxy.addr).await?;
    let mut tx = Conn::connect(proxy.addr).await?;
    sub.call(&[b"SUBSCRIBE", b"ch"]).await?;
    tx.call(&[b"MULTI"]).await?;
    tx.send(&cmd(&[b"SET", b"k", b"v"])).await?;
    assert_eq!(tx.read_frames(1).await?, b"+QUEUED\r\n");
    let started = tokio::time::Instant::now();
    proxy.shutdown.cancel();
    tokio::time::timeout(WAIT, proxy.task).await??;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sub.read_to_eof().await?, b"");
    assert_eq!(tx.read_to_eof().await?, b"");
    Ok(())
}

/// `blocked_clients:N` from Redis's `INFO clients`.
async fn blocked_clients(redis: &mut Conn) -> Result<u64> {
    let info = String::from_utf8(redis.call(&[b"INFO", b"clients"]).await?)?;
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .context("no blocked_clients in INFO")?
        .trim()
        .parse()
        .context("blocked_clients")
}

/// Polls Redis (bounded by `WAIT`) until `blocked_clients` is `n`.
async fn wait_blocked_clients(redis: &mut Conn, n: u64) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = blocked_clients(redis).await?;
        if now == n {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "blocked_clients stayed {now}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_pinned_session_finish_a_large_reply_in_flight() -> Result<()> {
    let redis = RedisServer::start().await?;
    // Far longer than the transfer needs: the grace is not what ends it.
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.shutdown_grace(Duration::from_secs(30))).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    // SELECT to a non-zero database pins the session.
    assert_eq!(c.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    let value: Vec<u8> = (0..16u32 << 20)
        .map(|i| b"ab\r\n\0xyz"[(i % 8) as usize])
        .collect();
    assert_eq!(c.call(&[b"SET", b"big", &value]).await?, b"+OK\r\n");
    let mut expected = format!("${}\r\n", value.len()).into_bytes();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\r\n");
    c.send(&cmd(&[b"GET", b"big"])).await?;
    // The reply has started; the client stops reading, so most of it is
    // still in Redis's output buffer when shutdown begins.
    let mut got = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, c.stream.read(&mut got))
        .await
        .context("no reply")??;
    ensure!(n > 0, "closed before the reply");
    got.truncate(n);
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.shutdown.cancel();
    // Time for Redis to act on whatever the proxy sends it at shutdown.
    tokio::time::sleep(Duration::from_millis(300)).await;
    got.extend(c.read_to_eof().await?);
    ensure!(
        got == expected,
        "got {} of {} bytes before the close (equal prefix: {}); tail: {}",
        got.len(),
        expected.len(),
        got.iter()
            .zip(&expected)
            .take_while(|(a, b)| a == b)
            .count(),
        show(&got[got.len().saturating_sub(40)..])
    );
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("proxy did not stop")??;
    Ok(())
}

/// Redis's reply to a command unblocked by `CLIENT UNBLOCK id ERROR`.
const UNBLOCKED: &str = "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n";

/// With this `shutdown_grace` (and a longer `upstream_timeout`), a pinned
/// session blocked at shutdown is unblocked [`UNBLOCK_AT`] after it began.
const GRACE: Duration = Duration::from_secs(2);
const UNBLOCK_AT: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unblocks_a_pinned_session_blocked_forever() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.shutdown_grace(GRACE)
            .upstream_timeout(Duration::from_secs(30))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut blocked = Conn::connect(proxy.addr).await?;
    blocked.send(&cmd(&[b"BLPOP", b"never", b"0"])).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    // A second pinned session, idle in a transaction, ends at once.
    let mut tx = Conn::connect(proxy.addr).await?;
    assert_eq!(tx.call(&[b"MULTI"]).await?, b"+OK\r\n");
    let started = tokio::time::Instant::now();
    proxy.shutdown.cancel();
    assert_eq!(tx.read_to_eof().await?, b"");
    // Near the end of the grace, BLPOP is unblocked with an error
    // (`CLIENT UNBLOCK id ERROR`), then the connection closes (a session
    // dropped at the end of the grace would get nothing).
    assert_eq!(
        show(&blocked.read_to_eof().await?),
        show(UNBLOCKED.as_bytes())
    );
    assert!(started.elapsed() >= UNBLOCK_AT, "{:?}", started.elapsed());
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("a blocked pinned session held shutdown")??;
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 1);
    // The session's upstream connection went with it.
    wait_blocked_clients(&mut direct, 0).await?;
    assert_eq!(direct.call(&[b"LLEN", b"never"]).await?, b":0\r\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unblocks_xread_wait_pipelined_blocking_commands_and_one_before_quit() -> Result<()>
{
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.shutdown_grace(GRACE)
            .upstream_timeout(Duration::from_secs(30))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let xread = cmd(&[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"never-s", b"$"]);
    // No replica ever acknowledges.
    let wait = cmd(&[b"WAIT", b"1", b"0"]);
    // Two blocking commands in one write: the second blocks once the first
    // is unblocked.
    let mut two = cmd(&[b"SET", b"a", b"1"]);
    two.extend(cmd(&[b"BLPOP", b"never", b"0"]));
    two.extend(cmd(&[b"BZPOPMIN", b"never-z", b"0"]));
    // A client that already sent QUIT is left to Redis, which can only
    // answer it once BLPOP returns.
    let mut quit = cmd(&[b"BLPOP", b"never", b"0"]);
    quit.extend(cmd(&[b"QUIT"]));
    // Each blocked command gets Redis's `-UNBLOCKED` error.
    let two_replies = format!("+OK\r\n{UNBLOCKED}{UNBLOCKED}");
    let quit_replies = format!("{UNBLOCKED}+OK\r\n");
    let cases: [(&[u8], &str); 4] = [
        (&xread, UNBLOCKED),
        (&wait, UNBLOCKED),
        (&two, &two_replies),
        (&quit, &quit_replies),
    ];
    let mut clients = Vec::new();
    for (n, (script, _)) in cases.iter().enumerate() {
        let mut c = Conn::connect(proxy.addr).await?;
        c.send(script).await?;
        wait_blocked_clients(&mut direct, n as u64 + 1).await?;
        clients.push(c);
    }
    let started = tokio::time::Instant::now();
    proxy.shutdown.cancel();
    for (c, (_, expected)) in clients.iter_mut().zip(&cases) {
        assert_eq!(show(&c.read_to_eof().await?), show(expected.as_bytes()));
    }
    assert!(started.elapsed() >= UNBLOCK_AT, "{:?}", started.elapsed());
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("a blocked pinned session held shutdown")??;
    wait_blocked_clients(&mut direct, 0).await?;
    // Once per blocking command.
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 5);
    // Only the commands before the blocked ones ran.
    assert_eq!(direct.call(&[b"GET", b"a"]).await?, b"$1\r\n1\r\n");
    assert_eq!(
        direct
            .call(&[b"EXISTS", b"never", b"never-s", b"never-z"])
            .await?,
        b":0\r\n"
    );
    Ok(())
}

/// A frame the proxy cannot frame (a bad bulk length): a pinned session
/// refuses it.
const UNFRAMEABLE: &[u8] = b"*1\r\n$x\r\n";

/// Polls the proxy's metrics (bounded by `WAIT`) until no session is pinned.
async fn wait_unpinned(proxy: &ProxyHandle) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = proxy.metrics.snapshot().pinned_clients;
        if now == 0 {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "pinned_clients stayed {now}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a proxy whose upstream user may run everything but `CLIENT`
/// (an ACL set up on `direct`): it cannot learn its pinned connections'
/// ids, so it cannot unblock them, and an ending session whose command is
/// blocked waits for Redis as it did before `CLIENT UNBLOCK` was used.
async fn proxy_without_client_command(
    redis: &RedisServer,
    direct: &mut Conn,
    tune: impl FnOnce(nexus_cache::ProxyConfigBuilder) -> nexus_cache::ProxyConfigBuilder,
) -> Result<ProxyHandle> {
    let acl: &[&[u8]] = &[
        b"ACL",
        b"SETUSER",
        b"noclient",
        b"on",
        b">pw",
        b"~*",
        b"&*",
        b"+@all",
        b"-client",
    ];
    assert_eq!(direct.call(acl).await?, b"+OK\r\n");
    ProxyHandle::start(&format!("redis://noclient:pw@{}", redis.addr()), tune).await
}

/// A client of [`proxy_without_client_command`], authenticated (the proxy
/// checks the upstream credentials).
async fn noclient_conn(proxy: &ProxyHandle) -> Result<Conn> {
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"AUTH", b"noclient", b"pw"]).await?, b"+OK\r\n");
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_session_unblocks_its_blocked_command() -> Result<()> {
    let redis = RedisServer::start().await?;
    // Neither the grace nor the upstream timeout is what ends it.
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.upstream_timeout(Duration::from_secs(60))
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let blocking: [&[&[u8]]; 3] = [
        &[b"BLPOP", b"never", b"0"],
        &[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"never-s", b"$"],
        // No replica ever acknowledges.
        &[b"WAIT", b"1", b"0"],
    ];
    for command in blocking {
        let mut c = Conn::connect(proxy.addr).await?;
        // A blocking command pins the session.
        assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
        let mut script = cmd(&[b"SET", b"a", b"1"]);
        script.extend(cmd(command));
        script.extend_from_slice(UNFRAMEABLE);
        let started = tokio::time::Instant::now();
        c.send(&script).await?;
        // Every reply, the blocked command's being Redis's error, then the
        // proxy's, then EOF.
        let rest = String::from_utf8(c.read_to_eof().await?)?;
        let expected = format!("+OK\r\n{UNBLOCKED}-ERR Protocol error: ");
        assert!(
            rest.starts_with(&expected) && rest.matches("\r\n").count() == 3,
            "{rest:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        wait_blocked_clients(&mut direct, 0).await?;
        wait_unpinned(&proxy).await?;
    }
    // Nothing reached Redis after the refused frame.
    assert_eq!(
        direct.call(&[b"EXISTS", b"never", b"never-s"]).await?,
        b":0\r\n"
    );
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .context("proxy did not stop")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_session_ends_when_its_client_leaves_during_a_blocked_command()
-> Result<()> {
    let redis = RedisServer::start().await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    // Neither the grace nor the upstream timeout is what ends it, and the
    // proxy cannot unblock the command.
    let proxy = proxy_without_client_command(&redis, &mut direct, |b| {
        b.upstream_timeout(Duration::from_secs(60))
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let blocking: [&[&[u8]]; 3] = [
        &[b"BLPOP", b"never", b"0"],
        &[b"XREAD", b"BLOCK", b"0", b"STREAMS", b"never-s", b"$"],
        // No replica ever acknowledges.
        &[b"WAIT", b"1", b"0"],
    ];
    for (command, half_close) in [
        (blocking[0], false),
        (blocking[1], false),
        (blocking[2], false),
        (blocking[0], true),
    ] {
        let mut c = noclient_conn(&proxy).await?;
        // A blocking command pins the session.
        assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
        let mut script = cmd(&[b"SET", b"a", b"1"]);
        script.extend(cmd(command));
        script.extend_from_slice(UNFRAMEABLE);
        c.send(&script).await?;
        wait_blocked_clients(&mut direct, 1).await?;
        assert_eq!(proxy.metrics.snapshot().pinned_clients, 1);
        if half_close {
            // The client stops writing but still reads: it gets what Redis
            // answered, then (the blocked command never answered) EOF.
            c.stream.shutdown().await?;
            let rest = String::from_utf8(c.read_to_eof().await?)?;
            assert!(rest.starts_with("+OK\r\n-ERR "), "{rest:?}");
        } else {
            drop(c);
        }
        // The session and its upstream connection go with the client.
        wait_blocked_clients(&mut direct, 0).await?;
        wait_unpinned(&proxy).await?;
    }
    // Nothing reached Redis after the refused frame.
    assert_eq!(
        direct.call(&[b"EXISTS", b"never", b"never-s"]).await?,
        b":0\r\n"
    );
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .context("proxy did not stop")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_session_waits_at_most_the_upstream_timeout() -> Result<()> {
    let redis = RedisServer::start().await?;
    let timeout = Duration::from_secs(1);
    let mut direct = Conn::connect(redis.addr()).await?;
    // The proxy cannot unblock the command.
    let proxy = proxy_without_client_command(&redis, &mut direct, |b| {
        b.upstream_timeout(timeout)
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let mut c = noclient_conn(&proxy).await?;
    assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
    let mut script = cmd(&[b"BLPOP", b"never", b"0"]);
    script.extend_from_slice(UNFRAMEABLE);
    c.send(&script).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    // The client stays; the session is dropped once the timeout elapses
    // (bounded here by `read_to_eof`'s own wait), and the client gets the
    // proxy's error in place of the reply Redis never sent.
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(
        rest.starts_with("-ERR Protocol error: ") && rest.matches("\r\n").count() == 1,
        "{rest:?}"
    );
    wait_blocked_clients(&mut direct, 0).await?;
    wait_unpinned(&proxy).await?;
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pinned_session_delivers_earlier_replies_before_a_blocked_one() -> Result<()> {
    let redis = RedisServer::start().await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    // BLPOP stays blocked until the test wakes it: the proxy cannot unblock it.
    let proxy = proxy_without_client_command(&redis, &mut direct, |b| b).await?;
    let mut c = noclient_conn(&proxy).await?;
    assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
    let mut script = cmd(&[b"SET", b"a", b"1"]);
    script.extend(cmd(&[b"BLPOP", b"k", b"0"]));
    script.extend_from_slice(UNFRAMEABLE);
    c.send(&script).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    // `+OK` arrives while BLPOP still blocks (it used to be held back
    // until the next bytes from Redis: here, never).
    let mut got = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(3), c.stream.read(&mut got))
        .await
        .context("SET's reply held back behind the blocked BLPOP")??;
    assert_eq!(&got[..n], b"+OK\r\n");
    assert_eq!(direct.call(&[b"RPUSH", b"k", b"v"]).await?, b":1\r\n");
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(
        rest.starts_with("*2\r\n$1\r\nk\r\n$1\r\nv\r\n-ERR Protocol error: ")
            && rest.matches("\r\n").count() == 6,
        "{rest:?}"
    );
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_session_ending_after_client_reply_skip_shows_no_farewell_reply() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    // Refused input right after `CLIENT REPLY SKIP`: Redis skips the
    // farewell's `RESET` reply; the client gets the error alone.
    let mut c = Conn::connect(proxy.addr).await?;
    let mut script = cmd(&[b"CLIENT", b"REPLY", b"SKIP"]);
    script.extend_from_slice(UNFRAMEABLE);
    c.send(&script).await?;
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(
        rest.starts_with("-ERR Protocol error: ") && rest.matches("\r\n").count() == 1,
        "{rest:?}"
    );
    // Shutdown right after it: nothing at all.
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"CLIENT", b"SETNAME", b"s"]).await?, b"+OK\r\n");
    c.send(&cmd(&[b"CLIENT", b"REPLY", b"SKIP"])).await?;
    // Time for the proxy to forward it before shutdown begins.
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.shutdown.cancel();
    assert_eq!(show(&c.read_to_eof().await?), "");
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("proxy did not stop")??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_pipelines_never_hang_the_proxy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b.max_bulk_len(64 * 1024)).await?;
    let mut bystander = Conn::connect(proxy.addr).await?;
    let mut valid = Vec::new();
    for c in [
        &[&b"SET"[..], b"k", b"v\r\n"][..],
        &[b"GET", b"k"],
        &[b"HSET", b"h", b"f", b"1"],
        &[b"HGETALL", b"h"],
        &[b"LPUSH", b"l", b"a", b"b"],
        &[b"LRANGE", b"l", b"0", b"-1"],
    ] {
        valid.extend(cmd(c));
    }
    valid.extend_from_slice(b"PING inline\r\n");
    // xorshift64: deterministic, no extra dependency.
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let alphabet = b"*$:+-\r\n0123456789-?abcGETPINGSET ";
    for case in 0..300 {
        let mut input = valid.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % input.len() as u64) as usize;
            input[at] = alphabet[(next() % alphabet.len() as u64) as usize];
        }
        if next() % 3 == 0 {
            input.truncate((next() % input.len() as u64) as usize);
        }
        let mut c = Conn::connect(proxy.addr).await?;
        c.send(&input).await?;
        c.stream.shutdown().await?;
        // Whatever the input did, the connection ends once the client is done.
        c.read_to_eof()
            .await
            .with_context(|| format!("case {case} hung: {}", show(&input)))?;
        if case % 50 == 0 {
            assert_eq!(bystander.call(&[b"PING"]).await?, b"+PONG\r\n");
        }
    }
    assert_eq!(bystander.call(&[b"ECHO", b"ok"]).await?, b"$2\r\nok\r\n");
    let deadline = tokio::time::Instant::now() + WAIT;
    while proxy.metrics.snapshot().connected_clients != 1 {
        ensure!(tokio::time::Instant::now() < deadline, "connections leaked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_blocking_command_with_a_timeout_complete() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.shutdown_grace(Duration::from_secs(30))).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    c.send(&cmd(&[b"BLPOP", b"jobs", b"5"])).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    proxy.shutdown.cancel();
    // A producer pushes within the BLPOP's timeout, well inside the grace:
    // the job is delivered, not cut short by an unblock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(direct.call(&[b"RPUSH", b"jobs", b"job1"]).await?, b":1\r\n");
    assert_eq!(
        show(&c.read_to_eof().await?),
        show(b"*2\r\n$4\r\njobs\r\n$4\r\njob1\r\n")
    );
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("proxy did not stop")??;
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 0);
    Ok(())
}

/// Like `FAILOVER`, `SHUTDOWN` with replicas, or a cluster failover do.
const PAUSE_WRITES: &[&[u8]] = &[b"CLIENT", b"PAUSE", b"1000", b"WRITE"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_held_by_client_pause_is_never_unblocked() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.upstream_timeout(Duration::from_secs(60))
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
    assert_eq!(direct.call(PAUSE_WRITES).await?, b"+OK\r\n");
    // Refused input unblocks at once, but INCR is held by the pause, not
    // blocking: it must run (once) and get its one reply. Then BLPOP
    // blocks: it is unblocked, once.
    let mut script = cmd(&[b"INCR", b"ctr"]);
    script.extend(cmd(&[b"BLPOP", b"never", b"0"]));
    script.extend_from_slice(UNFRAMEABLE);
    c.send(&script).await?;
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    let expected = format!(":1\r\n{UNBLOCKED}-ERR Protocol error: ");
    assert!(
        rest.starts_with(&expected) && rest.matches("\r\n").count() == 3,
        "{rest:?}"
    );
    assert_eq!(direct.call(&[b"GET", b"ctr"]).await?, b"$1\r\n1\r\n");
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 1);
    wait_unpinned(&proxy).await?;
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .context("proxy did not stop")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_write_at_shutdown_gets_one_reply() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy =
        ProxyHandle::start(&redis.url(), |b| b.shutdown_grace(Duration::from_secs(30))).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"BLPOP", b"x", b"0.01"]).await?, b"*-1\r\n");
    assert_eq!(direct.call(PAUSE_WRITES).await?, b"+OK\r\n");
    c.send(&cmd(&[b"INCR", b"ctr"])).await?;
    // Forwarded and held by the pause (Redis counts it as blocked).
    wait_blocked_clients(&mut direct, 1).await?;
    proxy.shutdown.cancel();
    assert_eq!(show(&c.read_to_eof().await?), show(b":1\r\n"));
    assert_eq!(direct.call(&[b"GET", b"ctr"]).await?, b"$1\r\n1\r\n");
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 0);
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("proxy did not stop")??;
    Ok(())
}

/// Resumes clients paused by the test, also when it fails.
struct Unpause(std::net::SocketAddr);

impl Drop for Unpause {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) = std::net::TcpStream::connect(self.0) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(&cmd(&[b"CLIENT", b"UNPAUSE"]));
            let _ = s.read(&mut [0u8; 64]);
        }
    }
}

/// `CLIENT UNBLOCK id TIMEOUT` on a command held by `CLIENT PAUSE`
/// crashes redis-server 7.x: the proxy must use `ERROR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_unblocks_a_paused_blpop_without_crashing_redis() -> Result<()> {
    let redis = RedisServer::start().await?;
    let grace = Duration::from_secs(1);
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.shutdown_grace(grace)
            .upstream_timeout(Duration::from_secs(30))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let pause: &[&[u8]] = &[b"CLIENT", b"PAUSE", b"60000", b"WRITE"];
    assert_eq!(direct.call(pause).await?, b"+OK\r\n");
    let _unpause = Unpause(redis.addr());
    let mut c = Conn::connect(proxy.addr).await?;
    // Held by the pause (Redis counts it as blocked), not blocked on the
    // list.
    c.send(&cmd(&[b"BLPOP", b"jobs", b"0"])).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    proxy.shutdown.cancel();
    // An error reply, or nothing, then EOF, within the grace.
    let got = tokio::time::timeout(grace + Duration::from_secs(2), c.read_to_eof())
        .await
        .context("the client was not closed within the grace")??;
    ensure!(
        got.is_empty() || (got.starts_with(b"-") && got.ends_with(b"\r\n")),
        "{}",
        show(&got)
    );
    tokio::time::timeout(WAIT, proxy.task)
        .await
        .context("proxy did not stop")??;
    // Redis survived the unblock.
    let mut after = Conn::connect(redis.addr())
        .await
        .context("Redis is gone (crashed by the unblock?)")?;
    let pong = tokio::time::timeout(Duration::from_secs(2), after.call(&[b"PING"]))
        .await
        .context("Redis does not answer")??;
    assert_eq!(show(&pong), show(b"+PONG\r\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unblocking_retries_while_redis_is_busy_with_a_script() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.upstream_timeout(Duration::from_secs(60))
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let threshold: &[&[u8]] = &[b"CONFIG", b"SET", b"busy-reply-threshold", b"20"];
    assert_eq!(direct.call(threshold).await?, b"+OK\r\n");
    let mut c = Conn::connect(proxy.addr).await?;
    c.send(&cmd(&[b"BLPOP", b"never", b"0"])).await?;
    wait_blocked_clients(&mut direct, 1).await?;
    // A script busy for 500 ms: meanwhile Redis answers `-BUSY` to
    // `CLIENT UNBLOCK`.
    let busy = b"local t=redis.call('TIME') local t0=t[1]*1000000+t[2] \
        while true do local n=redis.call('TIME') \
        if n[1]*1000000+n[2]-t0 > 500000 then break end end return 1";
    let mut script = Conn::connect(redis.addr()).await?;
    script.send(&cmd(&[b"EVAL", busy, b"0"])).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !direct.call(&[b"PING"]).await?.starts_with(b"-BUSY") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the script never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    c.send(UNFRAMEABLE).await?;
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(
        rest.starts_with(&format!("{UNBLOCKED}-ERR Protocol error: "))
            && rest.matches("\r\n").count() == 2,
        "{rest:?}"
    );
    assert_eq!(script.read_frames(1).await?, b":1\r\n");
    // It was tried while the script ran, and again after.
    let info = String::from_utf8(direct.call(&[b"INFO", b"commandstats"]).await?)?;
    let stats = info
        .lines()
        .find(|l| l.starts_with("cmdstat_client|unblock:"))
        .context("no CLIENT UNBLOCK ran")?;
    assert!(stats.contains("calls=1,"), "{stats}");
    assert!(!stats.contains("rejected_calls=0,"), "{stats}");
    wait_unpinned(&proxy).await?;
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .context("proxy did not stop")?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_a_pinned_connection_at_maxclients_is_reported() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"PING"]).await?, b"+PONG\r\n");
    let info = String::from_utf8(direct.call(&[b"INFO", b"clients"]).await?)?;
    let connected = info
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .context("no connected_clients")?
        .trim()
        .to_owned();
    let limit: &[&[u8]] = &[b"CONFIG", b"SET", b"maxclients", connected.as_bytes()];
    assert_eq!(direct.call(limit).await?, b"+OK\r\n");
    // Pinning opens one more connection: Redis says why it closes it.
    c.send(&cmd(&[b"BLPOP", b"x", b"0"])).await?;
    assert_eq!(
        show(&c.read_to_eof().await?),
        show(b"-ERR max number of clients reached\r\n")
    );
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_client_reply_skip_a_blocked_command_waits_for_the_upstream_timeout() -> Result<()> {
    let redis = RedisServer::start().await?;
    let timeout = Duration::from_secs(1);
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.upstream_timeout(timeout)
            .shutdown_grace(Duration::from_secs(60))
    })
    .await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut c = Conn::connect(proxy.addr).await?;
    // Replies no longer match commands: the session cannot tell which one
    // Redis is running, so it unblocks nothing and waits.
    let mut script = cmd(&[b"CLIENT", b"REPLY", b"SKIP"]);
    script.extend(cmd(&[b"BLPOP", b"never", b"0"]));
    script.extend_from_slice(UNFRAMEABLE);
    let started = tokio::time::Instant::now();
    c.send(&script).await?;
    let rest = String::from_utf8(c.read_to_eof().await?)?;
    assert!(
        rest.starts_with("-ERR Protocol error: ") && rest.matches("\r\n").count() == 1,
        "{rest:?}"
    );
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert_eq!(command_calls(&mut direct, "client|unblock").await?, 0);
    wait_blocked_clients(&mut direct, 0).await?;
    wait_unpinned(&proxy).await?;
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .context("proxy did not stop")?
}
