//! Client connection limits (`server:`): silent, half-preface and idle
//! connections are closed in bounded time; a request in flight is never cut by
//! the idle timeout; idle HTTP/1 keep-alive lasts the idle timeout, a slow
//! head the header timeout; a client that takes no data is dropped after the
//! send timeout, a slow but reading one gets its whole response; the drain
//! deadline closes what is left; oversized HTTP/1 headers get 431.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nexus_gateway::{Gateway, GatewayConfig, ReusePortListeners};
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{PROXY, TestGateway, raw_upstream, send, services_json, spawn_get, yaml};

/// Upper bound for "the gateway closed it" in these tests (the configured
/// limits are a few hundred milliseconds).
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// Opens a connection, writes `bytes`, and waits (bounded) until the gateway
/// closes it; returns how long that took.
async fn closed_after(addr: SocketAddr, bytes: &[u8]) -> Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(bytes).await?;
    let mut sink = Vec::new();
    // EOF or a reset both mean the gateway closed the connection.
    let _ = tokio::time::timeout(CLOSE_BOUND, s.read_to_end(&mut sink))
        .await
        .context("connection still open")?;
    Ok(start.elapsed())
}

/// An HTTP/2 client SETTINGS frame with no settings.
const EMPTY_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test]
async fn silent_and_half_preface_connections_are_closed() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let server = "server:\n  header_read_timeout_ms: 300\n  idle_timeout_ms: 400\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;

    let silent = closed_after(gw.addr, b"").await?;
    assert!(
        silent >= Duration::from_millis(250),
        "closed too early: {silent:?}"
    );
    closed_after(gw.addr, b"PRI * HTTP/2.0\r\n").await?;
    closed_after(gw.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n").await?;
    let mut h2 = PREFACE.to_vec();
    h2.extend_from_slice(EMPTY_SETTINGS);
    closed_after(gw.addr, &h2).await?;

    // The gateway still serves (both protocols) after all that.
    let r = gw.get("/health", None).await?;
    assert_eq!(r.status, StatusCode::OK);
    gw.shutdown().await
}

/// Sends `GET /health` over HTTP/2 and returns the connection's driver task,
/// which ends when the gateway closes the connection (the sender is kept
/// alive, so the client never closes it).
async fn h2_request_then_idle(
    addr: SocketAddr,
) -> Result<(
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}/health")).body(Empty::<Bytes>::new())?;
    let res = tokio::time::timeout(CLOSE_BOUND, sender.send_request(req)).await??;
    assert_eq!(res.status(), StatusCode::OK);
    res.into_body().collect().await?;
    Ok((sender, driver))
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_but_requests_in_flight_are_not() -> Result<()> {
    let up = HttpUpstream::start().await?;
    // The header-read timeout is long: closing within it proves the idle timer.
    let server = "server:\n  header_read_timeout_ms: 8000\n  idle_timeout_ms: 300\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;
    let token = gw.token().await?;

    // HTTP/1 keep-alive: one request answered, then idle.
    let t = closed_after(gw.addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    assert!(t < Duration::from_secs(4), "HTTP/1 idle close took {t:?}");

    // HTTP/2: one request answered, then idle.
    let start = Instant::now();
    let (_sender, driver) = h2_request_then_idle(gw.addr).await?;
    tokio::time::timeout(CLOSE_BOUND, driver)
        .await
        .context("idle HTTP/2 connection still open")??
        .ok();
    assert!(start.elapsed() < Duration::from_secs(4));

    // A request slower than the idle timeout completes (HTTP/1 and HTTP/2).
    up.set_latency(Duration::from_millis(900));
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/api/products", gw.addr))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let res = tokio::time::timeout(CLOSE_BOUND, sender.send_request(req)).await??;
    assert_eq!(res.status(), StatusCode::OK);
    gw.shutdown().await
}

#[tokio::test]
async fn oversized_headers_get_431() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let big = |n: usize| -> Result<Request<Bytes>> {
        Ok(Request::get("/health")
            .header("x-big", "a".repeat(n))
            .body(Bytes::new())?)
    };
    let r = send(gw.addr, big(24 * 1024)?).await?;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(gw.addr, big(nexus_gateway::MAX_HEADER_BUF + 1024)?).await?;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    gw.shutdown().await
}

#[tokio::test]
async fn per_core_workers_close_silent_connections() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services.json");
    std::fs::write(&services, services_json(&[up.url()]))?;
    let server = "server:\n  header_read_timeout_ms: 300\n  idle_timeout_ms: 300\n";
    let text = yaml(&services, 1000, &format!("{PROXY}{server}"));
    let gateway = Gateway::builder(GatewayConfig::from_yaml(&text)?.validate(|_| None)?).build()?;
    let listeners =
        ReusePortListeners::bind("127.0.0.1:0".parse()?, NonZeroUsize::new(2).context("2")?)?;
    let addr = listeners.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve_per_core(listeners, async {
        let _ = rx.await;
    }));
    // Several, so that both workers get some.
    for _ in 0..4 {
        closed_after(addr, b"").await?;
        closed_after(addr, b"PRI * HTTP/2.0\r\n").await?;
    }
    closed_after(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await?;
    let r = send(addr, Request::get("/health").body(Bytes::new())?).await?;
    assert_eq!(r.status, StatusCode::OK);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .context("drain timed out")???;
    Ok(())
}

#[tokio::test]
async fn server_limits_are_validated() -> Result<()> {
    for (field, value) in [
        ("header_read_timeout_ms", "0"),
        ("header_read_timeout_ms", "300001"),
        ("idle_timeout_ms", "0"),
        ("idle_timeout_ms", "3600001"),
        ("http2_keepalive_interval_ms", "0"),
        ("http2_keepalive_timeout_ms", "300001"),
        ("send_timeout_ms", "0"),
        ("send_timeout_ms", "3600001"),
    ] {
        let text = format!(
            "dev_mode: true\nproxy:\n  services_file: x.json\nserver:\n  {field}: {value}\n"
        );
        let err = GatewayConfig::from_yaml(&text)?
            .validate(|_| None)
            .err()
            .with_context(|| format!("{field}: {value} accepted"))?;
        assert!(
            err.to_string().contains(&format!("server.{field}")),
            "{err}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn drain_outlasts_the_idle_timeout_for_requests_in_flight() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let server = "server:\n  idle_timeout_ms: 200\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;
    let token = gw.token().await?;
    up.set_latency(Duration::from_millis(1200));
    let slow = spawn_get(gw.addr, "/api/products", token);
    // Shut down while the request is in flight (well past the idle timeout).
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.shutdown().await?;
    let r = slow.await??;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    Ok(())
}

#[tokio::test]
async fn http2_peer_that_never_answers_pings_is_dropped() -> Result<()> {
    let up = HttpUpstream::start().await?;
    // Idle timeout far away: only the keep-alive PING can close it in time.
    let server = "server:\n  idle_timeout_ms: 60000\n  http2_keepalive_interval_ms: 200\n  http2_keepalive_timeout_ms: 300\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;
    let mut h2 = PREFACE.to_vec();
    h2.extend_from_slice(EMPTY_SETTINGS);
    let t = closed_after(gw.addr, &h2).await?;
    assert!(t < Duration::from_secs(4), "took {t:?}");
    gw.shutdown().await
}

#[tokio::test]
async fn http1_keep_alive_lasts_the_idle_timeout_and_a_slow_head_the_header_timeout() -> Result<()>
{
    let up = HttpUpstream::start().await?;
    let server = "server:\n  header_read_timeout_ms: 300\n  idle_timeout_ms: 2000\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;
    let request = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];

    // Idle keep-alive: open well past the header timeout, closed by the idle one.
    let mut s = TcpStream::connect(gw.addr).await?;
    s.write_all(request).await?;
    let n = tokio::time::timeout(CLOSE_BOUND, s.read(&mut buf)).await??;
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(CLOSE_BOUND, s.read_to_end(&mut rest))
        .await
        .context("idle keep-alive connection never closed")??;
    let closed = idle.elapsed();
    assert!(
        closed >= Duration::from_millis(1800),
        "idle keep-alive closed after {closed:?}; idle_timeout is 2 s"
    );

    // After an idle pause longer than the header timeout, the next request is
    // still served on the same connection.
    let mut s = TcpStream::connect(gw.addr).await?;
    for _ in 0..2 {
        s.write_all(request).await?;
        let n = tokio::time::timeout(CLOSE_BOUND, s.read(&mut buf)).await??;
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
    }

    // A second request's head that never completes is cut at the header
    // timeout, not the idle timeout.
    s.write_all(b"GET /health HTTP/1.1\r\n").await?;
    let started = Instant::now();
    tokio::time::timeout(CLOSE_BOUND, s.read_to_end(&mut rest))
        .await
        .context("slow head never cut")??;
    let cut = started.elapsed();
    assert!(
        cut >= Duration::from_millis(250) && cut < Duration::from_millis(1500),
        "slow second head cut after {cut:?}; header_read_timeout is 300 ms"
    );

    // The first request's head gets the header timeout once, from the accept
    // (sniff included), not once for the sniff and once more after it.
    let start = Instant::now();
    let mut s = TcpStream::connect(gw.addr).await?;
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.write_all(b"GET /health HTTP/1.1\r\nHost").await?;
    tokio::time::timeout(CLOSE_BOUND, s.read_to_end(&mut rest))
        .await
        .context("slow first head never cut")??;
    let t = start.elapsed();
    assert!(
        t < Duration::from_millis(520),
        "slow first head cut {t:?} after the accept; header_read_timeout is 300 ms"
    );
    gw.shutdown().await
}

/// An upstream answering every request with `total` bytes, chunked, as fast
/// as its client takes them.
async fn big_upstream(total: usize) -> Result<String> {
    raw_upstream(move |mut s| async move {
        let h = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
        if s.write_all(h.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
            c.extend_from_slice(&chunk);
            c.extend_from_slice(b"\r\n");
            if s.write_all(&c).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await
}

#[tokio::test]
async fn client_that_stops_reading_is_dropped_after_the_send_timeout() -> Result<()> {
    let url = big_upstream(256 * 1024 * 1024).await?;
    // Every other limit is far above the stall: only the send timeout can cut it.
    let proxy = PROXY.replace(
        "timeout_ms: 2000",
        "timeout_ms: 60000\n  body_idle_timeout_ms: 60000",
    );
    let server = "server:\n  idle_timeout_ms: 60000\n  send_timeout_ms: 500\n";
    let gw = TestGateway::start(
        std::slice::from_ref(&url),
        1000,
        &format!("{proxy}{server}"),
    )
    .await?;
    let token = gw.token().await?;
    let mut s = TcpStream::connect(gw.addr).await?;
    let req = format!("GET /api/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut first = [0u8; 1024];
    let n = tokio::time::timeout(CLOSE_BOUND, s.read(&mut first)).await??;
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    // Stop reading: socket buffers fill, then the gateway's writes block.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lb = gw.get("/lb-stats", Some(&token)).await?.json();
    let e = lb["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url.as_str()))
        .cloned()
        .context("endpoint")?;
    assert_eq!(
        e["in_flight"], 0,
        "a client that reads nothing still holds the upstream attempt: {e}"
    );
    // What was buffered before the drop can still be read, then the end.
    let mut sink = vec![0u8; 1 << 20];
    let mut got = 0usize;
    let ended = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "connection still open after {got} more bytes"
    );
    assert!(got < 64 << 20, "{got} bytes delivered after the stall");
    gw.shutdown().await
}

#[tokio::test]
async fn slow_but_reading_http2_client_gets_the_whole_response() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let body = format!("{{\"pad\":\"{}\"}}", "a".repeat(12 * 1024));
    up.set_json(200, body.clone());
    // The response is handed to hyper in one frame, so the request stops
    // counting as in flight at once; the idle shutdown must not cut delivery.
    let server = "server:\n  header_read_timeout_ms: 300\n  idle_timeout_ms: 300\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;
    let token = gw.token().await?;
    let stream = TcpStream::connect(gw.addr).await?;
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(1024)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(conn);
    let req = Request::get(format!("http://{}/api/products", gw.addr))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let res = tokio::time::timeout(CLOSE_BOUND, sender.send_request(req)).await??;
    assert_eq!(res.status(), StatusCode::OK);
    let mut b = res.into_body();
    let mut got = Vec::new();
    // ~5 KiB/s: 1 KiB window, one frame every 200 ms.
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match tokio::time::timeout(CLOSE_BOUND, b.frame()).await {
            Ok(Some(Ok(f))) => got.extend_from_slice(f.data_ref().map_or(&[][..], |d| d)),
            Ok(Some(Err(e))) => anyhow::bail!("response cut after {} bytes: {e}", got.len()),
            Ok(None) => break,
            Err(_) => anyhow::bail!("response stalled after {} bytes", got.len()),
        }
    }
    // The gateway wraps the upstream's JSON: all of it must be there.
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(&body),
        "{} bytes, upstream body missing",
        got.len()
    );
    gw.shutdown().await
}

#[tokio::test]
async fn drain_deadline_closes_remaining_connections() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let extra = format!("{PROXY}shutdown:\n  drain_timeout_ms: 300\n");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    up.set_latency(Duration::from_millis(1800));
    let slow = spawn_get(gw.addr, "/api/products", token);
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shutdown().await?;
    // `serve` returned: the request still in flight was cut, not answered.
    let r = tokio::time::timeout(CLOSE_BOUND, slow)
        .await
        .context("request neither answered nor cut")??;
    assert!(
        r.is_err(),
        "answered {:?} after serve returned at the drain deadline",
        r.map(|r| r.status)
    );
    Ok(())
}
