//! Path-normalisation bypass attempts.

use anyhow::Result;
use http::StatusCode;
use nexus_testkit::HttpUpstream;

use crate::harness::{PROXY, TestGateway};

#[tokio::test]
async fn protected_routes_cannot_be_reached_without_a_token() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    // Spellings that normalise to a protected route: 401, never the admin data.
    for path in [
        "/telemetry",
        "//telemetry",
        "/telemetry/",
        "/health/../telemetry",
        "/./telemetry",
        "/metrics/../cb-stats",
        "/auth/token/../../lb-stats",
        "/telemetry?x=/health",
        "/HEALTH",
        "/healthz",
        "/health/x",
        "/api/products",
        "//api//products",
        "/health/../api/products",
    ] {
        let r = gw.get(path, None).await?;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {:?}", r.body);
    }
    // Encoded dots/slashes/backslashes and escapes above the root: 400.
    for path in [
        "/health/%2e%2e/telemetry",
        "/health%2ftelemetry",
        "/health/%2E%2E/api/x",
        "/health%5c..%5ctelemetry",
        "/../telemetry",
    ] {
        let r = gw.get(path, None).await?;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {:?}", r.body);
        assert_eq!(r.json()["error"], "bad_path");
    }
    // Public routes stay public in their normal spellings.
    for path in [
        "/health",
        "/health/",
        "//health",
        "/health?probe=1",
        "/metrics",
    ] {
        assert_eq!(gw.get(path, None).await?.status, StatusCode::OK, "{path}");
    }
    assert_eq!(up.requests(), 0, "no bypass reached the upstream");
    Ok(())
}

#[tokio::test]
async fn api_prefix_is_stripped_after_normalisation() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let token = gw.token().await?;
    assert_eq!(
        gw.get("/api/products?page=2&q=a%20b", Some(&token))
            .await?
            .status,
        StatusCode::OK
    );
    assert_eq!(
        up.last_request().unwrap().uri.to_string(),
        "/products?page=2&q=a%20b"
    );
    assert_eq!(
        gw.get("//api/./v1//items/", Some(&token)).await?.status,
        StatusCode::OK
    );
    assert_eq!(up.last_request().unwrap().uri.to_string(), "/v1/items");
    assert_eq!(gw.get("/api", Some(&token)).await?.status, StatusCode::OK);
    assert_eq!(up.last_request().unwrap().uri.to_string(), "/");
    assert_eq!(
        gw.get("/nope", Some(&token)).await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}
