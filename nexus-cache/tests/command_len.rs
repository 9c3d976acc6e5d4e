//! `max_command_len`: a command up to the limit passes byte-exact; a longer
//! one, complete or not, gets `-ERR Protocol error: …` after the replies
//! due before it and the connection closes, on shared and pinned
//! connections alike, while other clients are served as before.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
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
