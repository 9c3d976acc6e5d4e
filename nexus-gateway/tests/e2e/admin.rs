//! Admin endpoints, blocklist and configuration validation.

use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Result;
use http::StatusCode;
use nexus_gateway::blocklist::StaticBlocklist;
use nexus_gateway::{ConfigError, GatewayConfig};
use nexus_testkit::HttpUpstream;

use crate::harness::{CLIENT_ID, PROXY, TestGateway};

#[tokio::test]
async fn admin_endpoints() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let health = gw.get("/health", None).await?;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (StatusCode::OK, "ok".into())
    );
    let token = gw.token().await?;
    gw.get("/api/products", Some(&token)).await?;
    gw.get("/api/does/not/matter/123", Some(&token)).await?;

    let t = gw.get("/telemetry", Some(&token)).await?.json();
    let reqs = t["requests"].as_array().unwrap();
    let last_api = reqs
        .iter()
        .rev()
        .find(|e| e["path"] == "/api/does/not/matter/123")
        .unwrap();
    assert_eq!(last_api["method"], "GET");
    assert_eq!(last_api["status"], 200);
    assert_eq!(last_api["client"], CLIENT_ID);
    assert_eq!(last_api["ip"], "127.0.0.1");
    assert!(last_api["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        reqs.iter()
            .any(|e| e["path"] == "/auth/token" && e["client"] == "anonymous")
    );

    let lb = gw.get("/lb-stats", Some(&token)).await?.json();
    assert_eq!(lb["endpoints"][0]["url"], up.url().as_str(), "{lb}");
    let cb = gw.get("/cb-stats", Some(&token)).await?;
    assert_eq!(cb.status, StatusCode::OK);

    let m = String::from_utf8(gw.get("/metrics", None).await?.body.to_vec())?;
    // Route label is the template, never the raw path.
    assert!(
        m.contains(r#"nexus_http_requests_total{method="GET",route="/api/*",status_code="200"} 2"#),
        "{m}"
    );
    assert!(!m.contains("does/not/matter"));
    assert!(
        m.contains(r#"nexus_http_request_duration_ms_bucket{le="2000.0""#)
            || m.contains(r#"le="2000.0""#)
    );
    assert!(m.contains("nexus_upstream_request_duration_ms_count"));
    Ok(())
}

#[tokio::test]
async fn blocked_ip_gets_403_before_anything_else() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let list = StaticBlocklist::default();
    let gw =
        TestGateway::start_with(&[up.url()], 1000, PROXY, Some(Arc::new(list.clone()))).await?;
    assert_eq!(gw.get("/health", None).await?.status, StatusCode::OK);
    list.block("127.0.0.1".parse::<IpAddr>()?);
    let r = gw.get("/health", None).await?;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "ip_blocked");
    list.unblock("127.0.0.1".parse::<IpAddr>()?);
    assert_eq!(gw.get("/health", None).await?.status, StatusCode::OK);
    Ok(())
}

fn invalid_field(r: Result<nexus_gateway::Settings, ConfigError>) -> String {
    match r {
        Err(ConfigError::Invalid { field, .. }) => field,
        Err(e) => e.to_string(),
        Ok(_) => "accepted".into(),
    }
}

#[test]
fn config_errors_name_the_field() {
    let strong = "auth:\n  signing_secret: 0123456789abcdef0123456789abcdef\n  clients: []\n";
    let e = GatewayConfig::from_yaml("listen: 1.2.3.4:1\nlisen: x\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("lisen"), "{e}");
    let e = GatewayConfig::from_yaml("rate_limit:\n  capacty: 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("capacty"), "{e}");
    let cfg = |y: &str| {
        GatewayConfig::from_yaml(&format!("{strong}{y}"))
            .unwrap()
            .validate(|_| None)
    };
    assert_eq!(
        invalid_field(cfg("rate_limit:\n  capacity: 0\n")),
        "rate_limit.capacity"
    );
    assert_eq!(
        invalid_field(cfg("breaker:\n  error_threshold_percent: 101\n")),
        "breaker.error_threshold_percent"
    );
    assert_eq!(invalid_field(cfg("listen: nowhere\n")), "listen");
    assert_eq!(
        invalid_field(cfg("proxy:\n  max_attempts: 0\n")),
        "proxy.max_attempts"
    );
    assert_eq!(
        invalid_field(cfg("transform:\n  strip_headers: [\"bad header\"]\n")),
        "transform.strip_headers[0]"
    );
    assert!(cfg("").is_ok());
}

#[test]
fn secrets_are_refused_unless_dev_mode() {
    let yaml = |s: &str| GatewayConfig::from_yaml(s).unwrap();
    // Missing secret (env var unset), weak secret, and the seed's demo client secret.
    assert_eq!(
        invalid_field(yaml("auth:\n  clients: []\n").validate(|_| None)),
        "auth.signing_secret"
    );
    assert_eq!(
        invalid_field(yaml("auth:\n  signing_secret: short\n  clients: []\n").validate(|_| None)),
        "auth.signing_secret"
    );
    assert_eq!(
        invalid_field(
            yaml("auth:\n  signing_secret: 0123456789abcdef0123456789abcdef\n").validate(|_| None)
        ),
        "auth.clients[0].secret_sha256"
    );
    // The environment variable named by the config supplies the secret.
    let env = |k: &str| (k == "NEXUS_JWT_SECRET").then(|| "e".repeat(40));
    assert!(yaml("auth:\n  clients: []\n").validate(env).is_ok());
    // dev_mode accepts all of it, with warnings.
    let s = yaml("dev_mode: true\n").validate(|_| None).unwrap();
    assert!(s.dev_mode && s.warnings.len() >= 3, "{:?}", s.warnings);
}

#[test]
fn shipped_config_files_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("config");
    for f in ["gateway.example.yaml", "gateway.dev.yaml"] {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        GatewayConfig::from_yaml(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    let dev = GatewayConfig::from_file(root.join("gateway.dev.yaml").to_str().unwrap()).unwrap();
    assert!(dev.validate(|_| None).is_ok());
    let services = std::fs::read_to_string(root.join("services.json")).unwrap();
    assert_eq!(
        nexus_gateway::proxy::parse_services(&services)
            .unwrap()
            .len(),
        2
    );
}
