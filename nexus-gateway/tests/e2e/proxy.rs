//! Header transforms and JSON wrapping, as seen by the upstream and the client.

use anyhow::Result;
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_testkit::HttpUpstream;

use crate::harness::{PROXY, TestGateway, send};

#[tokio::test]
async fn headers_are_injected_and_stripped() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    let req = Request::get("/api/products")
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "client-id-123")
        .header("x-internal-secret", "hunter2")
        .header("x-admin-override", "true")
        .header("x-forwarded-for", "198.51.100.7")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("proxy-authorization", "Basic abc")
        .header("x-custom", "kept")
        .body(Bytes::new())?;
    let r = send(gw.addr, req).await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), Some("client-id-123"));
    let seen = up.last_headers().unwrap();
    assert_eq!(seen["x-request-id"], "client-id-123");
    assert_eq!(seen["x-gateway-version"], "1.0.0");
    assert_eq!(seen["x-forwarded-for"], "198.51.100.7, 127.0.0.1");
    let ts = seen["x-gateway-timestamp"].to_str()?;
    assert!(
        ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
        "{ts}"
    );
    assert_eq!(seen["x-custom"], "kept");
    for gone in [
        "x-internal-secret",
        "x-admin-override",
        "x-hop",
        "proxy-authorization",
        "connection",
    ] {
        assert!(
            seen.get(gone).is_none(),
            "{gone} must not reach the upstream"
        );
    }
    assert_eq!(
        seen["host"],
        up.addr().to_string(),
        "Host is the upstream's"
    );

    // An invalid client request id is replaced by a generated one, returned to the client.
    let req = Request::get("/api/products")
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "bad id with spaces")
        .body(Bytes::new())?;
    let r = send(gw.addr, req).await?;
    let rid = r.header("x-request-id").unwrap().to_owned();
    assert!(rid.starts_with("nexus-"), "{rid}");
    assert_eq!(up.last_headers().unwrap()["x-request-id"], rid.as_str());
    Ok(())
}

#[tokio::test]
async fn json_responses_are_wrapped_with_meta() -> Result<()> {
    let up = HttpUpstream::builder()
        .json(200, r#"{"items":[1,2,3]}"#)
        .start()
        .await?;
    let extra =
        format!("{PROXY}transform:\n  routes:\n    - prefix: /api/raw\n      wrap_json: false\n");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["data"], serde_json::json!({"items":[1,2,3]}));
    assert_eq!(v["_meta"]["gateway"], "nexus");
    assert_eq!(v["_meta"]["requestId"], r.header("x-request-id").unwrap());
    assert!(v["_meta"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        r.header("content-length").unwrap().parse::<usize>()?,
        r.body.len()
    );

    let raw = gw.get("/api/raw/products", Some(&token)).await?;
    assert_eq!(
        &raw.body[..],
        br#"{"items":[1,2,3]}"#,
        "per-route override leaves the body untouched"
    );

    // Invalid JSON under a JSON content type passes through untouched.
    up.set_json(200, "{not json");
    let r = gw.get("/api/products", Some(&token)).await?;
    assert_eq!(&r.body[..], b"{not json");
    assert_eq!(r.header("content-length"), Some("9"));
    Ok(())
}

#[tokio::test]
async fn large_json_is_not_buffered_past_the_cap() -> Result<()> {
    let big = format!("[{}1]", "1,".repeat(5000));
    let up = HttpUpstream::builder()
        .json(200, big.clone())
        .start()
        .await?;
    let extra = format!("{PROXY}transform:\n  max_wrap_body_bytes: 1024\n");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let r = gw.get("/api/big", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body.len(),
        big.len(),
        "over the cap: streamed through unwrapped"
    );
    Ok(())
}

/// Bodies larger than the proxy's small-body limit (16 KiB) stream in both
/// directions through the HTTP/1.1 upstream client, and the upstream connection
/// stays usable afterwards.
#[tokio::test]
async fn large_bodies_stream_both_ways() -> Result<()> {
    let numbers: Vec<String> = (0..30_000).map(|i| i.to_string()).collect();
    let big_json = format!("[{}]", numbers.join(","));
    assert!(big_json.len() > 100_000);
    let up = HttpUpstream::builder()
        .json(200, big_json.clone())
        .start()
        .await?;
    let extra = format!("{PROXY}transform:\n  wrap_json: false\n");
    let gw = TestGateway::start(&[up.url()], 1000, &extra).await?;
    let token = gw.token().await?;
    let upload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for round in 0..2 {
        let req = Request::post("/api/upload")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/octet-stream")
            .body(Bytes::from(upload.clone()))?;
        let r = send(gw.addr, req).await?;
        assert_eq!(r.status, StatusCode::OK, "round {round}");
        assert_eq!(
            r.body,
            big_json.as_bytes(),
            "round {round}: the whole answer"
        );
        let seen = up.last_request().unwrap();
        assert_eq!(
            seen.body.len(),
            upload.len(),
            "round {round}: the whole upload"
        );
        assert_eq!(&seen.body[..], &upload[..]);
    }
    // A small answer on the same gateway afterwards.
    up.set_json(200, "[1]");
    let r = gw.get("/api/small", Some(&token)).await?;
    assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"[1]"[..]));
    Ok(())
}
