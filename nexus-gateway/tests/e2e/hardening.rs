//! Audit fixes: `/auth/token` body deadline and cache headers, named field
//! errors; bounded paths in telemetry; standard JWT claim forms.

use std::time::Duration;

use anyhow::{Context as _, Result};
use http::StatusCode;
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::harness::{CLIENT_ID, CLIENT_SECRET, PROXY, TestGateway};

#[tokio::test]
async fn token_body_deadline_cache_headers_and_field_errors() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let server = "server:\n  header_read_timeout_ms: 300\n";
    let gw = TestGateway::start(&[up.url()], 1000, &format!("{PROXY}{server}")).await?;

    // Headers promise 100 bytes, none come: 408, not a hang.
    let mut s = TcpStream::connect(gw.addr).await?;
    s.write_all(
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"client_id\"",
    )
    .await?;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .context("no answer to a stalled token body")?;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");

    let r = gw
        .post_json(
            "/auth/token",
            &format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#),
        )
        .await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("pragma"), Some("no-cache"));

    let r = gw
        .post_json("/auth/token", r#"{"client_id":1,"client_secret":"x"}"#)
        .await?;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["message"], "client_id must be a string");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = gw
        .post_json("/auth/token", r#"{"client_id":"a","client_secret":[]}"#)
        .await?;
    assert_eq!(r.json()["message"], "client_secret must be a string");
    let r = gw.post_json("/auth/token", "{not json").await?;
    assert_eq!(r.json()["message"], "body must be JSON");
    gw.shutdown().await
}

#[tokio::test]
async fn telemetry_keeps_long_paths_cut() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let long = format!("/{}", "a".repeat(40_000));
    let r = gw.get(&long, None).await?;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = gw.get("/telemetry", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    let entries = body
        .as_array()
        .or_else(|| body["requests"].as_array())
        .or_else(|| body["entries"].as_array())
        .with_context(|| format!("telemetry shape: {body}"))?;
    let paths: Vec<&str> = entries.iter().filter_map(|e| e["path"].as_str()).collect();
    let cut = paths
        .iter()
        .find(|p| p.starts_with("/aaaa"))
        .with_context(|| format!("long path not recorded: {paths:?}"))?;
    assert!(
        cut.ends_with(nexus_gateway::telemetry::TRUNCATED_MARK),
        "{cut}"
    );
    assert_eq!(
        cut.len(),
        nexus_gateway::telemetry::MAX_RECORDED_PATH
            + nexus_gateway::telemetry::TRUNCATED_MARK.len()
    );
    assert!(
        r.body.len() < 8 * 1024,
        "telemetry body {} bytes",
        r.body.len()
    );
    gw.shutdown().await
}
