//! `max_command_len`: a command up to the limit passes byte-exact; a longer
//! one, complete or not, gets `-ERR Protocol error: …` after the replies
//! due before it and the connection closes, on shared and pinned
//! connections alike, while other clients are served as before.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::{Conn, ProxyHandle, WAIT, cmd, show};
use nexus_testkit::RedisServer;

/// The limit under test: small, so that the tests stay fast.
const LIMIT: usize = 64 * 1024;
/// The largest bulk the limit allows (`LIMIT - COMMAND_FRAMING`).
const BULK: usize = LIMIT - nexus_cache::COMMAND_FRAMING;
/// The reply to a command longer than [`LIMIT`].
const TOO_LONG: &str =
    "-ERR Protocol error: command longer than the limit of 65536 bytes (max_command_len)\r\n";

async fn proxy(redis: &RedisServer) -> Result<ProxyHandle> {
    ProxyHandle::start(&redis.url(), |b| {
        b.max_bulk_len(BULK).max_command_len(LIMIT)
    })
    .await
}

/// A value of `len` bytes with CR, LF and NUL in it (binary-safe).
fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b"ab\r\n\0xyz"[i % 8]).collect()
}

/// `SET <key> <maximal value>`, its key padded so that the whole frame is
/// `len` bytes; returns the frame, the key and the value.
fn set_of_len(len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let v = value(BULK);
    for klen in 1..len {
        let key: Vec<u8> = format!("k{}", "-".repeat(klen - 1)).into_bytes();
        let frame = cmd(&[b"SET", &key, &v]);
        if frame.len() == len {
            return (frame, key, v);
        }
    }
    unreachable!("no SET frame of {len} bytes")
}

/// `bulk` as a RESP bulk string reply.
fn bulk(b: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", b.len()).into_bytes();
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
    out
}

/// Asserts that `c`, having sent commands answered by `due` and then a
/// command too long, receives exactly `due`, then the limit's error, then EOF.
async fn assert_refused_after(c: &mut Conn, due: &[u8]) -> Result<()> {
    let mut want = due.to_vec();
    want.extend_from_slice(TOO_LONG.as_bytes());
    let got = c.read_to_eof().await?;
    ensure!(got == want, "got {} want {}", show(&got), show(&want));
    Ok(())
}

/// Polls the proxy's metrics (bounded by `WAIT`) until no session is pinned.
async fn wait_unpinned(proxy: &ProxyHandle) -> Result<()> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while proxy.metrics.snapshot().pinned_clients != 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the pinned session never ended"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[test]
fn the_test_frames_have_the_intended_lengths() {
    let (frame, key, v) = set_of_len(LIMIT);
    assert_eq!(frame.len(), LIMIT);
    assert_eq!(v.len(), BULK);
    let (over, over_key, _) = set_of_len(LIMIT + 1);
    assert_eq!(over.len(), LIMIT + 1);
    assert_ne!(key, over_key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_path_passes_a_command_at_the_limit_and_refuses_one_past_it() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = proxy(&redis).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    let mut bystander = Conn::connect(proxy.addr).await?;
    assert_eq!(bystander.call(&[b"PING"]).await?, b"+PONG\r\n");

    // At the limit, pipelined between other commands, in one write.
    let (at, key, v) = set_of_len(LIMIT);
    let mut c = Conn::connect(proxy.addr).await?;
    let mut script = cmd(&[b"SET", b"a", b"1"]);
    script.extend_from_slice(&at);
    script.extend(cmd(&[b"GET", &key]));
    c.send(&script).await?;
    let mut want = b"+OK\r\n+OK\r\n".to_vec();
    want.extend(bulk(&v));
    assert_eq!(c.read_frames(3).await?, want);
    // Stored byte-exact in Redis.
    assert_eq!(direct.call(&[b"GET", &key]).await?, bulk(&v));
    assert_eq!(c.call(&[b"PING"]).await?, b"+PONG\r\n");

    // One byte past it: the replies due first, then the error, then EOF.
    let (over, over_key, _) = set_of_len(LIMIT + 1);
    let mut script = cmd(&[b"SET", b"b", b"2"]);
    script.extend(cmd(&[b"INCR", b"b"]));
    script.extend_from_slice(&over);
    c.send(&script).await?;
    assert_refused_after(&mut c, b"+OK\r\n:3\r\n").await?;
    assert_eq!(direct.call(&[b"EXISTS", &over_key]).await?, b":0\r\n");

    // An incomplete command that has reached the limit is refused without
    // waiting for the rest (the client sends nothing more).
    let mut c = Conn::connect(proxy.addr).await?;
    let mut script = cmd(&[b"SET", b"c", b"3"]);
    script.extend_from_slice(&over[..LIMIT]);
    c.send(&script).await?;
    assert_refused_after(&mut c, b"+OK\r\n").await?;
    // One byte short of the limit, it still waits for the rest.
    let mut c = Conn::connect(proxy.addr).await?;
    c.send(&over[..LIMIT - 1]).await?;
    let mut probe = [0u8; 64];
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut probe),
    )
    .await;
    ensure!(early.is_err(), "answered before the limit: {early:?}");
    c.send(&over[LIMIT - 1..LIMIT]).await?;
    assert_refused_after(&mut c, b"").await?;

    // Other clients are served as before.
    assert_eq!(
        bystander.call(&[b"ECHO", b"still here"]).await?,
        b"$10\r\nstill here\r\n"
    );
    let mut fresh = Conn::connect(proxy.addr).await?;
    assert_eq!(fresh.call(&[b"GET", b"b"]).await?, b"$1\r\n3\r\n");
    // Each refusal counted once, as other refused input is.
    assert_eq!(proxy.metrics.snapshot().proxy_errors, 3);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_path_passes_a_command_at_the_limit_and_refuses_one_past_it() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = proxy(&redis).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    assert_eq!(direct.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    let mut bystander = Conn::connect(proxy.addr).await?;
    assert_eq!(bystander.call(&[b"PING"]).await?, b"+PONG\r\n");

    // `SELECT 1` pins the connection; the command at the limit follows.
    let (at, key, v) = set_of_len(LIMIT);
    let mut c = Conn::connect(proxy.addr).await?;
    let mut script = cmd(&[b"SELECT", b"1"]);
    script.extend_from_slice(&at);
    script.extend(cmd(&[b"GET", &key]));
    c.send(&script).await?;
    let mut want = b"+OK\r\n+OK\r\n".to_vec();
    want.extend(bulk(&v));
    assert_eq!(c.read_frames(3).await?, want);
    assert_eq!(proxy.metrics.snapshot().pinned_clients, 1);
    assert_eq!(direct.call(&[b"GET", &key]).await?, bulk(&v));

    // Past it, inside a transaction: the replies due first, then the
    // error; the session ends as for refused input (`RESET`, `QUIT`), so
    // the queued `SET` never runs and nothing of the long command does.
    let (over, over_key, _) = set_of_len(LIMIT + 1);
    let mut script = cmd(&[b"SET", b"b", b"2"]);
    script.extend(cmd(&[b"MULTI"]));
    script.extend(cmd(&[b"SET", b"queued", b"x"]));
    script.extend_from_slice(&over);
    c.send(&script).await?;
    assert_refused_after(&mut c, b"+OK\r\n+OK\r\n+QUEUED\r\n").await?;
    wait_unpinned(&proxy).await?;
    assert_eq!(direct.call(&[b"GET", b"b"]).await?, b"$1\r\n2\r\n");
    assert_eq!(direct.call(&[b"EXISTS", b"queued"]).await?, b":0\r\n");
    assert_eq!(direct.call(&[b"EXISTS", &over_key]).await?, b":0\r\n");

    // An incomplete command at the limit on a pinned connection: refused
    // without waiting for the rest.
    let mut c = Conn::connect(proxy.addr).await?;
    assert_eq!(c.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    let mut script = cmd(&[b"INCR", b"b"]);
    script.extend_from_slice(&over[..LIMIT]);
    c.send(&script).await?;
    assert_refused_after(&mut c, b":3\r\n").await?;
    wait_unpinned(&proxy).await?;

    // Other clients are served as before.
    assert_eq!(
        bystander.call(&[b"ECHO", b"still here"]).await?,
        b"$10\r\nstill here\r\n"
    );
    let mut fresh = Conn::connect(proxy.addr).await?;
    assert_eq!(fresh.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    assert_eq!(fresh.call(&[b"GET", b"b"]).await?, b"$1\r\n3\r\n");
    assert_eq!(proxy.metrics.snapshot().proxy_errors, 2);
    proxy.stop().await
}

/// An over-long command as a client streaming it sends it: `len` bytes of
/// an `RPUSH` of many maximal values that never ends within `len`.
fn endless_rpush(len: usize) -> Vec<u8> {
    let mut v = b"*1000\r\n$5\r\nRPUSH\r\n$1\r\nk\r\n".to_vec();
    while v.len() < len {
        v.extend(format!("${BULK}\r\n").as_bytes());
        v.resize(v.len() + BULK, b'x');
        v.extend(b"\r\n");
    }
    v.truncate(len);
    v
}

/// Stores an 8 MiB value at `big` (in db 1 when `pin`, where a client that
/// sends `SELECT 1` is pinned) and returns it.
async fn store_big(redis: &RedisServer, pin: bool) -> Result<Vec<u8>> {
    let mut direct = Conn::connect(redis.addr()).await?;
    if pin {
        assert_eq!(direct.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    }
    let big = value(8 << 20);
    assert_eq!(direct.call(&[b"SET", b"big", &big]).await?, b"+OK\r\n");
    Ok(big)
}

/// A client connected to the proxy, pinned when `pin`.
async fn client(proxy: &ProxyHandle, pin: bool) -> Result<Conn> {
    let mut c = Conn::connect(proxy.addr).await?;
    if pin {
        assert_eq!(c.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    }
    Ok(c)
}

/// `GET big` (8 MiB due), then `bad`, input the proxy refuses, sent whole
/// before the client reads anything: the client must still receive the
/// whole reply due, then the error starting with `error`, then EOF (no
/// reset: the proxy does not close on the unread rest of `bad`).
async fn large_reply_due_then_refused(
    proxy: &ProxyHandle,
    big: &[u8],
    pin: bool,
    bad: &[u8],
    error: &str,
) -> Result<()> {
    let mut c = client(proxy, pin).await?;
    let mut script = cmd(&[b"GET", b"big"]);
    script.extend_from_slice(bad);
    c.send(&script).await?;
    // A client busy sending: reads its replies a little later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = c.read_to_eof().await?;
    let due = bulk(big);
    ensure!(
        got.len() > due.len() && got[..due.len()] == due[..],
        "the reply due was cut: got {} of {} bytes, ending {}",
        got.len(),
        due.len(),
        show(&got[got.len().saturating_sub(100)..])
    );
    let rest = &got[due.len()..];
    ensure!(
        rest.starts_with(error.as_bytes())
            && rest.ends_with(b"\r\n")
            && !rest[..rest.len() - 2].contains(&b'\n'),
        "want one line starting {error:?}, got {}",
        show(rest)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_well_past_the_limit_does_not_cut_a_large_reply_due() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = proxy(&redis).await?;
    // 256 KiB past the limit: most of it is still unread when the proxy
    // refuses the command.
    let long = endless_rpush(LIMIT + 256 * 1024);
    for pin in [false, true] {
        let big = store_big(&redis, pin).await?;
        large_reply_due_then_refused(&proxy, &big, pin, &long, TOO_LONG)
            .await
            .with_context(|| format!("pinned: {pin}"))?;
    }
    wait_unpinned(&proxy).await?;
    assert_eq!(proxy.metrics.snapshot().proxy_errors, 2);
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_over_max_bulk_len_does_not_cut_a_large_reply_due() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = proxy(&redis).await?;
    let big = store_big(&redis, false).await?;
    // The older protocol errors end a shared connection the same way: a
    // bulk header over `max_bulk_len`, and then 256 KiB of its payload.
    let mut bad = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", BULK + 1).into_bytes();
    bad.resize(bad.len() + 256 * 1024, b'x');
    let error = format!(
        "-ERR Protocol error: bulk length {} exceeds the limit of {BULK}",
        BULK + 1
    );
    large_reply_due_then_refused(&proxy, &big, false, &bad, &error).await?;
    let mut direct = Conn::connect(redis.addr()).await?;
    assert_eq!(direct.call(&[b"EXISTS", b"k"]).await?, b":0\r\n");
    assert_eq!(proxy.metrics.snapshot().proxy_errors, 1);
    proxy.stop().await
}

/// A client that keeps streaming its over-long command (a writer task
/// sends for `stream_for`) while it reads its replies slowly.
async fn streaming_client(pin: bool) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = RedisServer::start().await?;
    let proxy = proxy(&redis).await?;
    let big = store_big(&redis, pin).await?;
    let c = client(&proxy, pin).await?;
    let (mut rd, mut wr) = c.stream.into_split();
    let mut script = cmd(&[b"GET", b"big"]);
    script.extend(endless_rpush(LIMIT + 1024));
    // Still sending well after the replies are read.
    let stream_for = Duration::from_secs(3);
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&script).await;
        let chunk = vec![b'x'; 4096];
        let end = tokio::time::Instant::now() + stream_for;
        while tokio::time::Instant::now() < end {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let mut want = bulk(&big);
    want.extend_from_slice(TOO_LONG.as_bytes());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            let n = rd.read(&mut chunk).await?;
            if n == 0 {
                return anyhow::Ok(());
            }
            got.extend_from_slice(&chunk[..n]);
            // A slow reader.
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await;
    let still_streaming = !writer.is_finished();
    writer.abort();
    ensure!(
        got == want,
        "pinned {pin}: got {} of {} bytes ({read:?}), ending {}",
        got.len(),
        want.len(),
        show(&got[got.len().saturating_sub(100)..])
    );
    read.context("no EOF")??;
    ensure!(
        still_streaming,
        "the test's client stopped sending too early"
    );
    wait_unpinned(&proxy).await?;
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_streaming_gets_the_reply_due_and_the_error_shared() -> Result<()> {
    streaming_client(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_streaming_gets_the_reply_due_and_the_error_pinned() -> Result<()> {
    streaming_client(true).await
}

/// The lingering close is bounded (by `shutdown_grace`) and a pinned
/// session gives back its pin before it: a client that keeps sending
/// forever and never closes is disconnected once the bound passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_is_bounded_and_does_not_hold_a_pin() -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let redis = RedisServer::start().await?;
    let linger = Duration::from_millis(500);
    let proxy = ProxyHandle::start(&redis.url(), |b| {
        b.max_bulk_len(BULK)
            .max_command_len(LIMIT)
            .shutdown_grace(linger)
    })
    .await?;
    for pin in [false, true] {
        let mut c = client(&proxy, pin).await?;
        let mut script = cmd(&[b"INCR", b"n"]);
        script.extend(endless_rpush(LIMIT));
        c.send(&script).await?;
        let (mut rd, mut wr) = c.stream.into_split();
        // Never closes; stops only on an error (the proxy closed).
        let writer = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let chunk = vec![b'x'; 4096];
            while wr.write_all(&chunk).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            started.elapsed()
        });
        let mut got = Vec::new();
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_end(&mut rd, &mut got),
        )
        .await
        .context("no EOF")??;
        // (The pinned client counts in db 1.)
        let want = format!(":1\r\n{TOO_LONG}");
        ensure!(got == want.as_bytes(), "pinned {pin}: got {}", show(&got));
        // Unpinned while the client is still sending.
        wait_unpinned(&proxy).await?;
        ensure!(!writer.is_finished(), "closed without lingering");
        let sent_for = tokio::time::timeout(WAIT, writer)
            .await
            .context("the proxy lingered without bound")??;
        ensure!(sent_for >= linger, "closed after {sent_for:?}");
        let deadline = tokio::time::Instant::now() + WAIT;
        while proxy.metrics.snapshot().connected_clients != 0 {
            ensure!(tokio::time::Instant::now() < deadline, "still connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    proxy.stop().await
}
