//! Token issue and the 401 variants.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use http::StatusCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use nexus_gateway::GatewayConfig;
use nexus_testkit::HttpUpstream;
use serde_json::json;

use crate::harness::{CLIENT_ID, CLIENT_SECRET, PROXY, SECRET, TestGateway};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(exp_offset: i64, iss: &str) -> serde_json::Value {
    let n = now() as i64;
    json!({ "sub": CLIENT_ID, "iss": iss, "aud": "nexus-api", "iat": n, "nbf": n - 1, "exp": n + exp_offset })
}

fn hs(alg: Algorithm, secret: &str, claims: &serde_json::Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn token_issue_and_rejections() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;

    let ok = gw
        .post_json(
            "/auth/token",
            &format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#),
        )
        .await?;
    assert_eq!(ok.status, StatusCode::OK);
    let body = ok.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(
        gw.get("/api/products", Some(token)).await?.status,
        StatusCode::OK
    );

    let wrong = gw
        .post_json(
            "/auth/token",
            &format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"nope"}}"#),
        )
        .await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json()["error"], "invalid_client");
    let unknown = gw
        .post_json(
            "/auth/token",
            r#"{"client_id":"someone","client_secret":"x"}"#,
        )
        .await?;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    let missing = gw
        .post_json("/auth/token", &format!(r#"{{"client_id":"{CLIENT_ID}"}}"#))
        .await?;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let bad_json = gw.post_json("/auth/token", "{not json").await?;
    assert_eq!(bad_json.status, StatusCode::BAD_REQUEST);
    let get = gw.get("/auth/token", None).await?;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        up.requests(),
        1,
        "rejected requests never reach the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn each_401_variant_is_distinct() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let gw = TestGateway::start(&[up.url()], 1000, PROXY).await?;
    let expect = |code: &'static str| {
        move |r: crate::harness::Reply| {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{code}: {:?}", r.body);
            assert_eq!(r.json()["error"], code);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    };
    expect("token_missing")(gw.get("/api/products", None).await?);
    expect("token_malformed")(gw.get("/api/products", Some("not-a-jwt")).await?);
    expect("token_malformed")(gw.get("/api/products", Some("a.b.c")).await?);
    let valid = claims(600, "nexus-gateway");
    expect("token_expired")(
        gw.get(
            "/api/products",
            Some(&hs(
                Algorithm::HS256,
                SECRET,
                &claims(-600, "nexus-gateway"),
            )),
        )
        .await?,
    );
    expect("token_wrong_algorithm")(
        gw.get("/api/products", Some(&hs(Algorithm::HS384, SECRET, &valid)))
            .await?,
    );
    // alg "none": header {"alg":"none","typ":"JWT"}, payload, empty signature.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let payload = hs(Algorithm::HS256, SECRET, &valid)
        .split('.')
        .nth(1)
        .unwrap()
        .to_owned();
    expect("token_wrong_algorithm")(
        gw.get("/api/products", Some(&format!("{none_header}.{payload}.")))
            .await?,
    );
    expect("token_bad_signature")(
        gw.get(
            "/api/products",
            Some(&hs(
                Algorithm::HS256,
                "another-secret-of-enough-length-1234567",
                &valid,
            )),
        )
        .await?,
    );
    expect("token_bad_claims")(
        gw.get(
            "/api/products",
            Some(&hs(Algorithm::HS256, SECRET, &claims(600, "someone-else"))),
        )
        .await?,
    );
    // And the same well-formed token with the right key passes.
    assert_eq!(
        gw.get("/api/products", Some(&hs(Algorithm::HS256, SECRET, &valid)))
            .await?
            .status,
        StatusCode::OK
    );
    assert_eq!(up.requests(), 1);
    Ok(())
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[tokio::test]
async fn rs256_and_es256_from_jwks_with_pinned_algorithm() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let rsa = EncodingKey::from_rsa_der(&std::fs::read(fixture("rsa.der"))?);
    let rsa2 = EncodingKey::from_rsa_der(&std::fs::read(fixture("rsa2.der"))?);
    let ec = EncodingKey::from_ec_der(&std::fs::read(fixture("ec.der"))?);
    let valid = claims(600, "nexus-gateway");
    let with_kid = |alg, kid: &str| {
        let mut h = Header::new(alg);
        h.kid = Some(kid.to_owned());
        h
    };
    let jwks = fixture("jwks.json").display().to_string();

    // RS256 gateway.
    let extra = PROXY.to_string();
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services.json");
    std::fs::write(&services, crate::harness::services_json(&[up.url()]))?;
    let yaml = format!(
        "auth:\n  algorithm: RS256\n  jwks_file: \"{jwks}\"\n  clients: []\n{}",
        extra.replace("@SERVICES@", &services.display().to_string())
    );
    let settings = GatewayConfig::from_yaml(&yaml)?.validate(|_| None)?;
    let gw = serve(settings).await?;
    let get = |t: String| {
        crate::harness::send(
            gw,
            http::Request::get("/api/x")
                .header("authorization", format!("Bearer {t}"))
                .body(bytes::Bytes::new())
                .unwrap(),
        )
    };
    let rs_ok = encode(&with_kid(Algorithm::RS256, "rsa-1"), &valid, &rsa)?;
    assert_eq!(get(rs_ok).await?.status, StatusCode::OK);
    let rs_no_kid = encode(&Header::new(Algorithm::RS256), &valid, &rsa)?;
    assert_eq!(get(rs_no_kid).await?.status, StatusCode::OK);
    let r = get(encode(&with_kid(Algorithm::RS256, "rsa-1"), &valid, &rsa2)?).await?;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("token_bad_signature"))
    );
    // HS/RS confusion: an HS256 token "signed" with the public JWKS text is refused by algorithm.
    let r = get(hs(
        Algorithm::HS256,
        &std::fs::read_to_string(fixture("jwks.json"))?,
        &valid,
    ))
    .await?;
    assert_eq!(r.json()["error"], "token_wrong_algorithm");
    // An ES256 token is the wrong algorithm for an RS256 gateway.
    let r = get(encode(&with_kid(Algorithm::ES256, "ec-1"), &valid, &ec)?).await?;
    assert_eq!(r.json()["error"], "token_wrong_algorithm");
    // No token issue without a signing key.
    let r = crate::harness::send(
        gw,
        http::Request::post("/auth/token").body(bytes::Bytes::from_static(b"{}"))?,
    )
    .await?;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);

    // ES256 gateway.
    let yaml = yaml.replace("RS256", "ES256");
    let settings = GatewayConfig::from_yaml(&yaml)?.validate(|_| None)?;
    let gw = serve(settings).await?;
    let get = |t: String| {
        crate::harness::send(
            gw,
            http::Request::get("/api/x")
                .header("authorization", format!("Bearer {t}"))
                .body(bytes::Bytes::new())
                .unwrap(),
        )
    };
    assert_eq!(
        get(encode(&with_kid(Algorithm::ES256, "ec-1"), &valid, &ec)?)
            .await?
            .status,
        StatusCode::OK
    );
    let r = get(encode(&with_kid(Algorithm::RS256, "rsa-1"), &valid, &rsa)?).await?;
    assert_eq!(r.json()["error"], "token_wrong_algorithm");
    Ok(())
}

async fn serve(settings: nexus_gateway::Settings) -> Result<std::net::SocketAddr> {
    let gateway = nexus_gateway::Gateway::builder(settings).build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Runs until the test's runtime ends.
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    Ok(addr)
}
