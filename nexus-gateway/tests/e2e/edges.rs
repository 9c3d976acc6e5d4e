//! Smaller proxy rules: `X-Forwarded-For` lists, HEAD on wrapped routes,
//! `https` endpoints, and what a 502 says.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{PROXY, TestGateway, raw_upstream, send, services_json};

/// Writes `request`, reads until the gateway closes the connection.
async fn raw(addr: std::net::SocketAddr, request: &str) -> Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn every_x_forwarded_for_line_is_kept_in_order() -> Result<()> {
    let up = HttpUpstream::builder().start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let r = raw(
        gw.addr,
        &format!(
            "GET /api/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let seen = up.last_headers().unwrap();
    let all: Vec<_> = seen.get_all("x-forwarded-for").iter().collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0], "1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1");
    Ok(())
}

#[tokio::test]
async fn head_on_a_wrapped_json_route_keeps_the_upstream_length() -> Result<()> {
    // A raw upstream that answers HEAD as a JSON GET of 7 bytes would.
    let url = raw_upstream(|mut s| async move {
        let _ = s
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n",
            )
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await?;
    let gw = TestGateway::start(&[url], 1000, PROXY).await?;
    let token = gw.token().await?;
    let r = raw(
        gw.addr,
        &format!(
            "HEAD /api/head-json HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await?;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("content-length: 7\r\n"),
        "the length a GET would have: {r}"
    );
    Ok(())
}

#[tokio::test]
async fn https_endpoints_are_refused_at_load_and_on_edit() -> Result<()> {
    let err = TestGateway::start(&["https://127.0.0.1:9".to_owned()], 1000, PROXY)
        .await
        .err()
        .map(|e| format!("{e:#}"))
        .unwrap_or_default();
    assert!(
        err.contains("https://127.0.0.1:9") && err.contains("proxy.services_file"),
        "names the endpoint and the field: {err}"
    );
    let up = HttpUpstream::builder().name("plain").start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    std::fs::write(
        gw.services_path(),
        services_json(&["https://127.0.0.1:9".to_owned()]),
    )?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = gw.get("/api/x", Some(&token)).await?;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the edit is refused, the old set stays"
    );
    assert_eq!(r.header("x-nexus-upstream"), Some("plain"));
    Ok(())
}

#[tokio::test]
async fn a_502_says_whether_the_request_was_retried() -> Result<()> {
    // A port nothing listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        format!("http://{}", l.local_addr()?)
    };
    let gw = TestGateway::start(&[dead], 1000, PROXY).await?;
    let token = gw.token().await?;
    let post = Request::post("/api/products")
        .header("authorization", format!("Bearer {token}"))
        .body(Bytes::from_static(b"x"))?;
    let r = send(gw.addr, post).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json()["message"],
        "upstream request failed",
        "{:?}",
        r.body
    );
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    // A GET is retried (how often depends on max_attempts and the breaker).
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    let n: u32 = message
        .strip_prefix("upstream failed after ")
        .and_then(|m| m.strip_suffix(" attempts"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n >= 2, "{message}");
    Ok(())
}
