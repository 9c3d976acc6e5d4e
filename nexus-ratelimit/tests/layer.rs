//! The layer's public behaviour through `oneshot`, on tokio's paused clock.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::{Router, routing::get};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use nexus_ratelimit::{
    FromExtension, KeyedLimiter, LimiterConfig, MissingKey, PeerIp, Quota, RateLimitLayer,
};
use tower::ServiceExt;

fn app(layer: RateLimitLayer<PeerIp>) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

fn from(ip: &str) -> Request<Body> {
    let peer: SocketAddr = format!("{ip}:4000").parse().unwrap();
    Request::get("/")
        .extension(ConnectInfo(peer))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn rejects_after_capacity_and_refills_with_time() {
    let app = app(RateLimitLayer::new(
        KeyedLimiter::new(LimiterConfig::default()),
        PeerIp::new(),
    ));
    for i in 0..10u32 {
        let res = app.clone().oneshot(from("192.0.2.1")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let expected = format!("\"default\";r={};t={}", 9 - i, (i + 1).div_ceil(2));
        assert_eq!(res.headers()["ratelimit"], expected.as_str());
        assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=10;w=5");
    }
    let res = app.clone().oneshot(from("192.0.2.1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(res.headers()["content-type"], "application/json");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "rate_limited");
    assert_eq!(json["retry_after_secs"], 1);

    // Another client is unaffected.
    let res = app.clone().oneshot(from("192.0.2.2")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // 2 tokens per second: after 1 s exactly two more requests pass.
    tokio::time::advance(Duration::from_secs(1)).await;
    for _ in 0..2 {
        let res = app.clone().oneshot(from("192.0.2.1")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app.clone().oneshot(from("192.0.2.1")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn hook_sees_key_and_request() {
    let seen: Arc<Mutex<Vec<(String, String, Duration)>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let quota = Quota::per_second(1.try_into().unwrap(), 1.try_into().unwrap());
    let layer =
        RateLimitLayer::builder(KeyedLimiter::new(LimiterConfig::new(quota)), PeerIp::new())
            .policy_name("per-ip")
            .on_reject(
                move |r: &nexus_ratelimit::Rejection<'_, std::net::IpAddr>| {
                    sink.lock().unwrap().push((
                        r.key.unwrap().to_string(),
                        r.uri.path().to_owned(),
                        r.retry_after,
                    ));
                },
            )
            .build()
            .unwrap();
    let app = app(layer);
    assert_eq!(
        app.clone()
            .oneshot(from("198.51.100.9"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let res = app.clone().oneshot(from("198.51.100.9")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["ratelimit-policy"], "\"per-ip\";q=1;w=1");
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![(
            "198.51.100.9".to_owned(),
            "/".to_owned(),
            Duration::from_secs(1)
        )]
    );
}

#[test]
fn invalid_policy_name_is_a_config_error() {
    let err = RateLimitLayer::builder(
        KeyedLimiter::<std::net::IpAddr>::new(LimiterConfig::default()),
        PeerIp::new(),
    )
    .policy_name("bad name\"")
    .build()
    .unwrap_err();
    assert!(err.to_string().contains("policy_name"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn keyless_requests_share_a_bucket_or_pass() {
    let quota = Quota::per_second(2.try_into().unwrap(), 1.try_into().unwrap());
    let shared = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(
            KeyedLimiter::new(LimiterConfig::new(quota)),
            FromExtension::<String>::new(),
        ));
    let anon = || Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(
        shared.clone().oneshot(anon()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        shared.clone().oneshot(anon()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        shared.clone().oneshot(anon()).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A subject set by an earlier layer gets its own bucket.
    let alice = Request::get("/")
        .extension("alice".to_owned())
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        shared.clone().oneshot(alice).await.unwrap().status(),
        StatusCode::OK
    );

    let open = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::builder(
            KeyedLimiter::new(LimiterConfig::new(quota)),
            FromExtension::<String>::new(),
        )
        .missing_key(MissingKey::Allow)
        .headers_on_success(false)
        .build()
        .unwrap(),
    );
    for _ in 0..5 {
        let res = open.clone().oneshot(anon()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn rejected_requests_never_reach_the_inner_service() {
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let quota = Quota::per_second(3.try_into().unwrap(), 1.try_into().unwrap());
    let app = Router::new()
        .route(
            "/",
            get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { "ok" }
            }),
        )
        .layer(RateLimitLayer::new(
            KeyedLimiter::new(LimiterConfig::new(quota)),
            PeerIp::new(),
        ));
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(
            app.clone()
                .oneshot(from("203.0.113.5"))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}
