//! Request and response bodies that fail: whose fault it is (client or
//! upstream), what the client gets, and that nothing hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use http::StatusCode;
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{BREAKER_YAML, PROXY, TestGateway, proxy_timeouts, raw_upstream, send};

/// Proxy section with a short `proxy.timeout` and the same streamed-body
/// idle limit.
fn proxy(timeout_ms: u64) -> String {
    proxy_timeouts(timeout_ms, timeout_ms)
}

/// A raw upstream: for each connection, reads a request head, writes
/// `response`, then holds the connection open for `hold` (a stall) and closes.
async fn scripted(response: Vec<u8>, hold: Duration) -> Result<String> {
    let response = Arc::new(response);
    raw_upstream(move |mut s| {
        let response = Arc::clone(&response);
        async move {
            if s.write_all(&response).await.is_ok() {
                tokio::time::sleep(hold).await;
            }
        }
    })
    .await
}

/// Writes `request` on a fresh connection and reads until the gateway closes
/// it (or `within` passes): the raw response text.
async fn raw(addr: SocketAddr, request: &[u8], within: Duration) -> Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn malformed_chunked_bodies_get_400_and_leave_the_circuit_closed() -> Result<()> {
    let up = HttpUpstream::builder().name("ok").start().await?;
    let extra = format!("{PROXY}{BREAKER_YAML}");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let bad = format!(
        "POST /api/products HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n"
    );
    for i in 0..6 {
        let r = raw(gw.addr, bad.as_bytes(), Duration::from_secs(5)).await?;
        assert!(r.starts_with("HTTP/1.1 400"), "request {i}: {r}");
        assert!(r.contains("bad_request_body"), "request {i}: {r}");
    }
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    gw.assert_closed_without_failures(&token, &up.url()).await?;
    Ok(())
}

#[tokio::test]
async fn clients_leaving_mid_upload_are_not_counted_against_the_upstream() -> Result<()> {
    let up = HttpUpstream::builder().name("ok").start().await?;
    let extra = format!("{PROXY}{BREAKER_YAML}");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let head = format!(
        "PUT /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 1000000\r\n\r\n"
    );
    for _ in 0..4 {
        let mut s = TcpStream::connect(gw.addr).await?;
        s.write_all(head.as_bytes()).await?;
        s.write_all(&vec![b'x'; 70_000]).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    // Each abandoned exchange is over once the upstream call has ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    gw.assert_closed_without_failures(&token, &up.url()).await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_upload_gets_408_and_a_slow_one_still_goes_through() -> Result<()> {
    let up = HttpUpstream::builder().name("ok").start().await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(300));
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    // Stalled: 10 of 1000 bytes, then nothing. 408 after the 300 ms idle limit.
    for i in 0..4 {
        let head = format!(
            "PUT /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 1000\r\n\r\n0123456789"
        );
        let started = tokio::time::Instant::now();
        let r = raw(gw.addr, head.as_bytes(), Duration::from_secs(5)).await?;
        assert!(r.starts_with("HTTP/1.1 408"), "request {i}: {r}");
        assert!(started.elapsed() < Duration::from_secs(3), "request {i}");
    }
    // Slow but moving: 20 bytes, one every 50 ms (1 s in all, over the 300 ms
    // timeout): the upstream's time counts from the end of the upload.
    let mut s = TcpStream::connect(gw.addr).await?;
    let head = format!(
        "PUT /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 20\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await?;
    for b in b"abcdefghijklmnopqrst" {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(&[*b]).await?;
    }
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await??;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = up.last_request().context("the upstream saw the upload")?;
    assert_eq!(seen.body, "abcdefghijklmnopqrst", "{out}");
    gw.assert_closed_without_failures(&token, &up.url()).await?;
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_to_be_wrapped_or_buffered_gets_504_and_counts() -> Result<()> {
    let json =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\""
            .to_vec();
    let text =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhello".to_vec();
    for (what, script) in [("wrapped json", json), ("small text", text)] {
        let url = scripted(script, Duration::from_secs(20)).await?;
        let extra = format!("{}{BREAKER_YAML}", proxy(300));
        let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
        let token = gw.token().await?;
        let started = tokio::time::Instant::now();
        let r = gw.get("/api/stall", Some(&token)).await?;
        assert_eq!(
            r.status,
            StatusCode::GATEWAY_TIMEOUT,
            "{what}: {:?}",
            r.body
        );
        assert_eq!(r.json()["error"], "upstream_timeout", "{what}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}");
        let c = gw.circuit(&token, &url).await?;
        assert_eq!(c["failures"], 1, "{what}: the upstream is at fault: {c}");
    }
    Ok(())
}

#[tokio::test]
async fn a_chunked_json_body_over_the_wrap_cap_passes_through_byte_exact() -> Result<()> {
    // 5000 bytes of valid JSON in 5 chunks; the wrap cap is 1024.
    let body: String = format!("[{}11]", "1,".repeat(2498));
    assert_eq!(body.len(), 5000);
    let mut script =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for chunk in body.as_bytes().chunks(1000) {
        script.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        script.extend_from_slice(chunk);
        script.extend_from_slice(b"\r\n");
    }
    script.extend_from_slice(b"0\r\n\r\n");
    let url = scripted(script, Duration::ZERO).await?;
    let extra = format!("{PROXY}transform:\n  max_wrap_body_bytes: 1024\n");
    let gw = TestGateway::start(&[url], 1000, &extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/big", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, body.as_bytes(), "unwrapped and complete");
    Ok(())
}

#[tokio::test]
async fn a_streamed_body_that_stalls_is_cut_after_the_idle_limit_and_counts() -> Result<()> {
    let script =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nhello"
            .to_vec();
    let url = scripted(script, Duration::from_secs(20)).await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(300));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let req = http::Request::get("/api/stall")
        .header("authorization", format!("Bearer {token}"))
        .body(bytes::Bytes::new())?;
    let started = tokio::time::Instant::now();
    let r = send(gw.addr, req).await;
    let elapsed = started.elapsed();
    assert!(r.is_err(), "the body is cut, not completed: {r:?}");
    assert!(
        elapsed < Duration::from_secs(5),
        "cut after the idle limit, not the client's own timeout: {elapsed:?}"
    );
    let c = gw.circuit(&token, &url).await?;
    assert_eq!(c["failures"], 1, "the upstream is at fault: {c}");
    Ok(())
}

#[tokio::test]
async fn a_client_that_reads_slowly_does_not_trip_the_idle_limit() -> Result<()> {
    // 4 MiB sent at once: the upstream's writes wait while the client does
    // not read, which is not the upstream stalling.
    let len = 4 << 20;
    let mut script = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    script.extend(std::iter::repeat_n(b'z', len));
    let url = scripted(script, Duration::from_secs(20)).await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(300));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let mut s = TcpStream::connect(gw.addr).await?;
    s.write_all(
        format!(
            "GET /api/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    // Read a little, pause well past the idle limit three times, then the rest.
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..3 {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await??;
        out.extend_from_slice(&buf[..n]);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await??;
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response head")?
        + 4;
    assert!(out.starts_with(b"HTTP/1.1 200"));
    assert_eq!(out.len() - head_end, len, "the whole body arrived");
    let c = gw.circuit(&token, &url).await?;
    assert_eq!(c["failures"], 0, "{c}");
    Ok(())
}

#[tokio::test]
async fn an_upstream_that_does_not_read_the_upload_gets_504_and_counts() -> Result<()> {
    // Reads the request head, then neither reads nor answers.
    let url = scripted(Vec::new(), Duration::from_secs(20)).await?;
    let extra = format!("{}{BREAKER_YAML}", proxy(300));
    let gw = TestGateway::start(std::slice::from_ref(&url), 1000, &extra).await?;
    let token = gw.token().await?;
    let len = 64 << 20;
    let s = TcpStream::connect(gw.addr).await?;
    let (mut rd, mut wr) = s.into_split();
    let head = format!(
        "PUT /api/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    // The client uploads as fast as the gateway takes it.
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..len / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let started = tokio::time::Instant::now();
    let mut out = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut out)).await??;
    let text = String::from_utf8_lossy(&out[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 504"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    writer.abort();
    let c = gw.circuit(&token, &url).await?;
    assert_eq!(c["failures"], 1, "the upstream is at fault: {c}");
    Ok(())
}

#[tokio::test]
async fn a_stalled_upload_is_not_an_upstream_latency_sample() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, &proxy(1000)).await?;
    let token = gw.token().await?;
    let head = format!(
        "PUT /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n0123456789"
    );
    let out = raw(gw.addr, head.as_bytes(), Duration::from_secs(5)).await?;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    // A request the upstream did answer is a sample, so the metric exists.
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK);
    let m = String::from_utf8_lossy(&gw.get("/metrics", Some(&token)).await?.body).into_owned();
    let counts: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("nexus_upstream_request_duration_ms_count"))
        .collect();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        counts[0].ends_with(" 1"),
        "client fault recorded as upstream latency: {counts:?}"
    );
    gw.shutdown().await
}
