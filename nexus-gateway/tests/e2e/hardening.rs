//! Audit fixes: `/auth/token` body deadline and cache headers, named field
//! errors; bounded paths in telemetry; standard JWT claim forms.

use std::time::Duration;

use anyhow::{Context as _, Result};
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use nexus_testkit::HttpUpstream;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use serde_json::json;

use crate::harness::{CLIENT_ID, CLIENT_SECRET, PROXY, SECRET, TestGateway};

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

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `(claims, expected status, expected error code)` covering the RFC 7519
/// forms: `aud` string or array, non-integer NumericDates, missing claims.
fn claim_cases() -> Vec<(serde_json::Value, StatusCode, &'static str)> {
    let n = now_secs();
    let f = n as f64;
    vec![
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": ["other", "nexus-api"], "exp": n + 600}),
            StatusCode::OK,
            "",
        ),
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": "nexus-api", "exp": f + 600.5, "nbf": f - 0.25, "iat": f - 0.25}),
            StatusCode::OK,
            "",
        ),
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": ["a", "b"], "exp": n + 600}),
            StatusCode::UNAUTHORIZED,
            "token_bad_claims",
        ),
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": "nexus-api", "exp": f - 100.5}),
            StatusCode::UNAUTHORIZED,
            "token_expired",
        ),
        (
            json!({"iss": "nexus-gateway", "aud": "nexus-api", "exp": n + 600}),
            StatusCode::UNAUTHORIZED,
            "token_bad_claims",
        ),
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": "nexus-api"}),
            StatusCode::UNAUTHORIZED,
            "token_bad_claims",
        ),
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": "nexus-api", "exp": "soon"}),
            StatusCode::UNAUTHORIZED,
            "token_bad_claims",
        ),
        // exp near u64::MAX: verified, cached, and a second use (cache hit) must
        // not overflow `exp + leeway`.
        (
            json!({"sub": CLIENT_ID, "iss": "nexus-gateway", "aud": "nexus-api", "exp": u64::MAX}),
            StatusCode::OK,
            "",
        ),
    ]
}

async fn check_claims(
    addr: std::net::SocketAddr,
    sign: impl Fn(&serde_json::Value) -> Result<String>,
) -> Result<()> {
    for (claims, status, code) in claim_cases() {
        let token = sign(&claims)?;
        for _ in 0..2 {
            let req = http::Request::get("/cb-stats")
                .header("authorization", format!("Bearer {token}"))
                .body(bytes::Bytes::new())?;
            let r = crate::harness::send(addr, req).await?;
            assert_eq!(r.status, status, "{claims}: {:?}", r.body);
            if !code.is_empty() {
                assert_eq!(r.json()["error"], code, "{claims}");
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn standard_jwt_claim_forms_hs256() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let key = EncodingKey::from_secret(SECRET.as_bytes())?;
    check_claims(gw.addr, |c| {
        Ok(encode(&Header::new(Algorithm::HS256), c, &key)?)
    })
    .await?;
    gw.shutdown().await
}

#[tokio::test]
async fn standard_jwt_claim_forms_rs256() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let key = EncodingKey::from_rsa_der(&std::fs::read(fixtures.join("rsa.der"))?);
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services.json");
    std::fs::write(&services, crate::harness::services_json(&[up.url()]))?;
    let yaml = format!(
        "auth:\n  algorithm: RS256\n  jwks_file: \"{}\"\n  clients: []\nrate_limit:\n  enabled: false\n{}",
        fixtures.join("jwks.json").display(),
        PROXY.replace("@SERVICES@", &services.display().to_string())
    );
    let settings = nexus_gateway::GatewayConfig::from_yaml(&yaml)?.validate(|_| None)?;
    let gateway = nexus_gateway::Gateway::builder(settings).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async {
        let _ = rx.await;
    }));
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    check_claims(addr, |c| Ok(encode(&header, c, &key)?)).await?;
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .context("drain timed out")???;
    Ok(())
}

#[test]
fn numeric_settings_have_upper_bounds_naming_the_field() -> Result<()> {
    let huge = "18446744073709551615";
    for (section, field, value) in [
        ("proxy", "timeout_ms", huge),
        ("proxy", "timeout_ms", "600001"),
        ("proxy", "retry_backoff_ms", huge),
        ("proxy", "retry_backoff_ms", "60001"),
        ("proxy", "max_attempts", "4000000000"),
        ("proxy", "max_attempts", "11"),
        ("proxy", "discovery_poll_ms", huge),
        ("shutdown", "drain_timeout_ms", huge),
        ("breaker", "reset_timeout_ms", huge),
        ("breaker", "window_ms", huge),
        ("blocklist", "refresh_ms", huge),
    ] {
        let proxy = if section == "proxy" {
            format!("proxy:\n  services_file: x.json\n  {field}: {value}\n")
        } else {
            format!("proxy:\n  services_file: x.json\n{section}:\n  {field}: {value}\n")
        };
        let text = format!("dev_mode: true\n{proxy}");
        let err = nexus_gateway::GatewayConfig::from_yaml(&text)?
            .validate(|_| None)
            .err()
            .with_context(|| format!("{section}.{field}: {value} accepted"))?;
        assert!(
            err.to_string().contains(&format!("{section}.{field}")),
            "{err}"
        );
    }
    // The bounds themselves are accepted.
    let text = "dev_mode: true\nproxy:\n  services_file: x.json\n  timeout_ms: 600000\n  retry_backoff_ms: 0\n  max_attempts: 10\nshutdown:\n  drain_timeout_ms: 3600000\n";
    nexus_gateway::GatewayConfig::from_yaml(text)?.validate(|_| None)?;
    Ok(())
}

#[test]
fn rate_limit_key_yaml_forms() -> Result<()> {
    use nexus_gateway::config::RateLimitKey;
    let parse = |key: &str| -> Result<RateLimitKey> {
        let text = format!("rate_limit:\n  key: {key}\n");
        Ok(nexus_gateway::GatewayConfig::from_yaml(&text)?
            .rate_limit
            .key)
    };
    let header = RateLimitKey::Header("x-api-key".to_owned());
    assert_eq!(parse("ip")?, RateLimitKey::Ip);
    assert_eq!(parse("{header: x-api-key}")?, header);
    assert_eq!(parse("\n    header: x-api-key")?, header);
    assert_eq!(parse("!header x-api-key")?, header);
    for bad in ["ipv4", "{heder: x}", "{header: x, extra: y}", "[ip]"] {
        let err = parse(bad)
            .err()
            .with_context(|| format!("{bad} accepted"))?;
        assert!(err.to_string().contains("rate_limit.key"), "{bad}: {err}");
    }
    Ok(())
}

#[tokio::test]
async fn rate_limit_keyed_by_documented_header_form() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services.json");
    std::fs::write(&services, crate::harness::services_json(&[up.url()]))?;
    let text = crate::harness::yaml(&services, 2, PROXY)
        .replace("rate_limit:\n", "rate_limit:\n  key: {header: x-api-key}\n");
    let settings = nexus_gateway::GatewayConfig::from_yaml(&text)?.validate(|_| None)?;
    let gateway = nexus_gateway::Gateway::builder(settings).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve(listener, async {
        let _ = rx.await;
    }));
    let health = |key: &'static str| {
        crate::harness::send(
            addr,
            http::Request::get("/health")
                .header("x-api-key", key)
                .body(bytes::Bytes::new())
                .unwrap_or_default(),
        )
    };
    assert_eq!(health("k1").await?.status, StatusCode::OK);
    assert_eq!(health("k1").await?.status, StatusCode::OK);
    assert_eq!(health("k1").await?.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(health("k2").await?.status, StatusCode::OK);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .context("drain timed out")???;
    Ok(())
}
