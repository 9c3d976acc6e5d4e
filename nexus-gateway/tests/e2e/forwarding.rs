//! Forwarding headers the upstream sees (audit F15): the client cannot forge
//! `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` or `Forwarded`.

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_testkit::HttpUpstream;

use crate::harness::{PROXY, TestGateway, send};

#[tokio::test]
async fn forged_forwarding_headers_are_replaced_or_removed() -> Result<()> {
    let up = HttpUpstream::builder().start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let req = Request::get("/api/echo")
        .header("host", "shop.example:8080")
        .header("authorization", format!("Bearer {token}"))
        .header("x-real-ip", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6;proto=https;host=evil")
        .header("x-forwarded-host", "evil")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "6.6.6.6")
        .body(Bytes::new())?;
    let r = send(gw.addr, req).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let seen = up.last_headers().context("the upstream saw the request")?;
    let one = |name: &str| -> Vec<String> {
        seen.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert_eq!(
        one("x-real-ip"),
        ["127.0.0.1"],
        "the peer, not the client's claim"
    );
    assert_eq!(one("x-forwarded-proto"), ["http"]);
    assert_eq!(
        one("x-forwarded-host"),
        ["shop.example:8080"],
        "the client's Host"
    );
    assert!(one("forwarded").is_empty(), "{:?}", one("forwarded"));
    assert_eq!(
        one("x-forwarded-for"),
        ["6.6.6.6, 127.0.0.1"],
        "the client's chain is kept, the peer appended last"
    );
    // The upstream's own Host is the endpoint's authority.
    let host = up.addr().to_string();
    assert_eq!(one("host"), [host]);
    Ok(())
}

#[tokio::test]
async fn forwarding_headers_are_set_without_any_from_the_client() -> Result<()> {
    let up = HttpUpstream::builder().start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/echo", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let seen = up.last_headers().context("the upstream saw the request")?;
    assert_eq!(seen["x-real-ip"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    // The harness sends Host: <gateway addr>.
    assert_eq!(seen["x-forwarded-host"], gw.addr.to_string().as_str());
    Ok(())
}
