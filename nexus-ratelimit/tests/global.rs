//! Global mode against a real `redis-server` (feature `redis`):
//! `cargo test -p nexus-ratelimit --features redis --test global`.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::{Router, routing::get};
use http::{Request, StatusCode};
use nexus_ratelimit::{
    Fallback, GlobalRateLimitLayer, MissingKey, PeerIp, Quota, RedisLimiter, RedisLimiterConfig,
    Source,
};
use nexus_testkit::RedisServer;
use tower::ServiceExt;

const LIMIT: Duration = Duration::from_secs(30);

fn config(url: String, fallback: Fallback) -> RedisLimiterConfig {
    let mut cfg = RedisLimiterConfig::new(url);
    cfg.quota = Quota::per_second(5.try_into().unwrap(), 1.try_into().unwrap());
    cfg.fallback = fallback;
    cfg.timeout = Duration::from_millis(500);
    cfg
}

#[tokio::test]
async fn two_limiters_share_one_budget_through_redis() {
    tokio::time::timeout(LIMIT, async {
        let redis = RedisServer::start().await.unwrap();
        // Two "processes": separate limiters and connections, one Redis.
        let a = RedisLimiter::new(config(redis.url(), Fallback::Deny)).unwrap();
        let b = RedisLimiter::new(config(redis.url(), Fallback::Deny)).unwrap();
        let mut admitted = 0;
        for i in 0..10 {
            let l = if i % 2 == 0 { &a } else { &b };
            let (d, source) = l.check(b"client-1").await;
            assert_eq!(source, Source::Redis);
            if let Ok(allowed) = d {
                admitted += 1;
                assert_eq!(allowed.remaining(), 5 - admitted);
            } else {
                let denied = d.unwrap_err();
                assert!(
                    denied.retry_after() > Duration::ZERO
                        && denied.retry_after() <= Duration::from_secs(1)
                );
            }
        }
        assert_eq!(admitted, 5, "5 tokens in total, not 5 per limiter");
        // Other keys are independent.
        assert!(a.check(b"client-2").await.0.is_ok());
        // The key expires once its bucket would be full again (<= 5 s).
        let ttl = redis.cli(["PTTL", "nexus:rl:client-1"]).await.unwrap();
        let ttl: i64 = ttl.trim().parse().unwrap();
        assert!(ttl > 0 && ttl <= 5_001, "pttl {ttl}");
        // One second refills one token.
        tokio::time::sleep(Duration::from_millis(1_050)).await;
        assert!(a.check(b"client-1").await.0.is_ok());
        assert!(b.check(b"client-1").await.0.is_err());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn fallback_when_redis_is_down_then_recovers() {
    tokio::time::timeout(LIMIT, async {
        let redis = RedisServer::start().await.unwrap();
        let deny = RedisLimiter::new(config(redis.url(), Fallback::Deny)).unwrap();
        let allow = RedisLimiter::new(config(redis.url(), Fallback::Allow)).unwrap();
        // One token per hour so that the slow failing checks refill nothing.
        let mut local_cfg = config(redis.url(), Fallback::Local);
        local_cfg.quota =
            Quota::with_period(5.try_into().unwrap(), Duration::from_secs(3600)).unwrap();
        let local = RedisLimiter::new(local_cfg).unwrap();
        assert_eq!(deny.check(b"k").await.1, Source::Redis);
        redis.stop();

        let (d, s) = deny.check(b"k").await;
        assert_eq!(s, Source::Fallback);
        assert!(d.is_err(), "fail closed");
        for _ in 0..20 {
            let (d, s) = allow.check(b"k").await;
            assert_eq!(s, Source::Fallback);
            assert!(d.is_ok(), "fail open");
        }
        let mut ok = 0;
        let started = std::time::Instant::now();
        for _ in 0..8 {
            let (d, s) = local.check(b"k").await;
            assert_eq!(s, Source::Fallback);
            ok += usize::from(d.is_ok());
        }
        assert_eq!(ok, 5, "local fallback applies the quota per process");
        assert!(local.redis_errors() >= 8);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "each check bounded by the 500 ms timeout"
        );

        redis.restart().await.unwrap();
        let mut source = Source::Fallback;
        for _ in 0..50 {
            source = deny.check(b"fresh").await.1;
            if source == Source::Redis {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(source, Source::Redis, "reconnects after redis is back");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn global_layer_in_an_axum_router() {
    tokio::time::timeout(LIMIT, async {
        let redis = RedisServer::start().await.unwrap();
        let limiter = RedisLimiter::new(config(redis.url(), Fallback::Deny)).unwrap();
        let layer =
            GlobalRateLimitLayer::new(limiter, PeerIp::new(), "global", MissingKey::Shared, None)
                .unwrap();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let peer: SocketAddr = "192.0.2.10:1234".parse().unwrap();
        let req = || {
            Request::get("/")
                .extension(ConnectInfo(peer))
                .body(Body::empty())
                .unwrap()
        };
        for i in 0..5u32 {
            let res = app.clone().oneshot(req()).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let expected = format!("\"global\";r={}", 4 - i);
            assert!(
                res.headers()["ratelimit"]
                    .to_str()
                    .unwrap()
                    .starts_with(&expected)
            );
        }
        let res = app.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()["retry-after"], "1");
        assert_eq!(res.headers()["ratelimit-policy"], "\"global\";q=5;w=5");
        let keys = redis.cli(["EXISTS", "nexus:rl:192.0.2.10"]).await.unwrap();
        assert_eq!(keys.trim(), "1");
    })
    .await
    .unwrap();
}
