//! Streamed bodies that pause: `proxy.body_idle_timeout` (not the shorter
//! `proxy.timeout`) bounds the wait for the next frame in both directions,
//! so server-sent events, long polls and slow uploads pass, and a stream that
//! stops for longer is cut.

use std::time::Duration;

use anyhow::{Context as _, Result};
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{BREAKER_YAML, TestGateway, proxy_timeouts, raw_upstream};

/// Proxy section: `proxy.timeout` 200 ms, streamed-body idle limit `idle_ms`.
fn proxy(idle_ms: u64) -> String {
    proxy_timeouts(200, idle_ms)
}

/// A raw upstream answering every request with an event stream: the chunked
/// head and `first`, then `pause`, then `second` and the end of the body.
async fn pausing_events(
    first: &'static str,
    pause: Duration,
    second: &'static str,
) -> Result<String> {
    raw_upstream(move |mut s| async move {
        let chunk = |d: &str| format!("{:x}\r\n{d}\r\n", d.len());
        let start = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
            chunk(first)
        );
        if s.write_all(start.as_bytes()).await.is_err() {
            return;
        }
        tokio::time::sleep(pause).await;
        let end = format!("{}0\r\n\r\n", chunk(second));
        let _ = s.write_all(end.as_bytes()).await;
        let _ = s.shutdown().await;
    })
    .await
}

/// `GET /api/events` on a fresh connection; the raw response read until the
/// gateway closes it (at most 10 s), and how long that took.
async fn get_events(gw: &TestGateway, token: &str) -> Result<(String, Duration)> {
    let mut s = TcpStream::connect(gw.addr).await?;
    let req = format!(
        "GET /api/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    Ok((
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    ))
}

#[tokio::test]
async fn an_event_stream_pausing_longer_than_the_call_timeout_passes() -> Result<()> {
    // Pauses 700 ms: over proxy.timeout (200 ms), under the idle limit (3 s).
    let url = pausing_events("data: one\n\n", Duration::from_millis(700), "data: two\n\n").await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(3000));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let (out, elapsed) = get_events(&gw, &token).await?;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        out.contains("data: one") && out.contains("data: two"),
        "{out}"
    );
    assert!(
        out.ends_with("0\r\n\r\n"),
        "the stream ended cleanly: {out:?}"
    );
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    let c = gw.circuit(&token, &url).await?;
    assert_eq!(c["failures"], 0, "{c}");
    Ok(())
}

#[tokio::test]
async fn an_event_stream_pausing_longer_than_the_idle_limit_is_cut_and_counts() -> Result<()> {
    // Pauses 5 s: over the idle limit (600 ms).
    let url = pausing_events("data: one\n\n", Duration::from_secs(5), "data: two\n\n").await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(600));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let (out, elapsed) = get_events(&gw, &token).await?;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("data: one"), "{out}");
    assert!(!out.contains("data: two"), "{out}");
    assert!(!out.ends_with("0\r\n\r\n"), "cut, not ended: {out:?}");
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(4),
        "cut after the idle limit: {elapsed:?}"
    );
    let c = gw.circuit(&token, &url).await?;
    assert_eq!(c["failures"], 1, "the upstream is at fault: {c}");
    // The balancer heard of it too, and the attempt is over.
    let e = endpoint(&gw, &token, &url).await?;
    assert_eq!(e["failed"], 1, "{e}");
    assert_eq!(e["in_flight"], 0, "{e}");
    Ok(())
}

/// The `/lb-stats` entry of `url`.
async fn endpoint(gw: &TestGateway, token: &str, url: &str) -> Result<serde_json::Value> {
    let lb = gw.get("/lb-stats", Some(token)).await?.json();
    lb["endpoints"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["url"] == url))
        .cloned()
        .with_context(|| format!("no endpoint {url}: {lb}"))
}

#[tokio::test]
async fn a_streaming_response_stays_in_flight_on_the_balancer_until_it_ends() -> Result<()> {
    let url = pausing_events(
        "data: one\n\n",
        Duration::from_millis(1500),
        "data: two\n\n",
    )
    .await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(5000));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let gw = std::sync::Arc::new(gw);
    let streaming = {
        let (gw, token) = (std::sync::Arc::clone(&gw), token.clone());
        tokio::spawn(async move { get_events(&gw, &token).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let e = endpoint(&gw, &token, &url).await?;
    assert_eq!(e["in_flight"], 1, "mid-stream: {e}");
    let (out, _) = streaming.await??;
    assert!(
        out.contains("data: two") && out.ends_with("0\r\n\r\n"),
        "{out:?}"
    );
    let e = endpoint(&gw, &token, &url).await?;
    assert_eq!(e["in_flight"], 0, "{e}");
    assert_eq!(e["failed"], 0, "{e}");
    Ok(())
}

/// Uploads `ab...` in two halves with `pause` between them; the raw response.
async fn paused_upload(gw: &TestGateway, token: &str, pause: Duration) -> Result<String> {
    let mut s = TcpStream::connect(gw.addr).await?;
    let head = format!(
        "PUT /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 20\r\nConnection: close\r\n\r\nabcdefghij"
    );
    s.write_all(head.as_bytes()).await?;
    tokio::time::sleep(pause).await;
    // The gateway may have answered and closed already.
    let _ = s.write_all(b"klmnopqrst").await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn an_upload_pausing_longer_than_the_call_timeout_passes() -> Result<()> {
    let up = HttpUpstream::builder().name("ok").start().await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(3000));
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let out = paused_upload(&gw, &token, Duration::from_millis(700)).await?;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = up.last_request().context("the upstream saw the upload")?;
    assert_eq!(seen.body, "abcdefghijklmnopqrst");
    let c = gw.circuit(&token, &up.url()).await?;
    assert_eq!(c["failures"], 0, "{c}");
    Ok(())
}

#[tokio::test]
async fn an_upload_pausing_longer_than_the_idle_limit_gets_408() -> Result<()> {
    let up = HttpUpstream::builder().name("ok").start().await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(500));
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let started = tokio::time::Instant::now();
    let out = paused_upload(&gw, &token, Duration::from_secs(3)).await?;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(8));
    let c = gw.circuit(&token, &up.url()).await?;
    assert_eq!(c["failures"], 0, "the client is at fault: {c}");
    Ok(())
}

#[tokio::test]
async fn body_idle_timeout_is_validated() -> Result<()> {
    for bad in ["0", "3600001"] {
        let text = format!(
            "dev_mode: true\nproxy:\n  services_file: x.json\n  body_idle_timeout_ms: {bad}\n"
        );
        let err = nexus_gateway::GatewayConfig::from_yaml(&text)?
            .validate(|_| None)
            .err()
            .context("must be refused")?;
        assert!(
            err.to_string().contains("proxy.body_idle_timeout_ms"),
            "{bad}: {err}"
        );
    }
    let text = "dev_mode: true\nproxy:\n  services_file: x.json\n";
    let s = nexus_gateway::GatewayConfig::from_yaml(text)?.validate(|_| None)?;
    assert_eq!(s.proxy.body_idle_timeout, Duration::from_secs(60));
    Ok(())
}
