//! The breaker in front of real HTTP upstreams over loopback TCP (from
//! `nexus-testkit`): one that fails, one that is slow, one killed mid-test.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use nexus_breaker::{Breaker, BreakerConfig, BreakerLayer, Error, State};
use nexus_testkit::HttpUpstream;
use tokio::net::TcpStream;
use tower::{BoxError, Layer, Service, ServiceExt, service_fn};

/// A one-request-per-connection HTTP/1.1 client for `addr`.
fn client(
    addr: SocketAddr,
) -> impl Service<
    Request<Empty<Bytes>>,
    Response = Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |req: Request<Empty<Bytes>>| async move {
        let stream = TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let res = send.send_request(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, BoxError>(Response::from_parts(parts, body))
    })
}

fn req() -> Request<Empty<Bytes>> {
    Request::get("/")
        .header("host", "localhost")
        .body(Empty::new())
        .unwrap()
}

fn fast_config() -> BreakerConfig {
    let mut cfg = BreakerConfig::default();
    cfg.reset_timeout = Duration::from_millis(300);
    cfg.call_timeout = Some(Duration::from_millis(300));
    cfg
}

/// Every test is bounded.
const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn failing_upstream_opens_then_recovers() {
    tokio::time::timeout(LIMIT, async {
        let up = HttpUpstream::builder()
            .json(500, r#"{"err":true}"#)
            .start()
            .await
            .unwrap();
        let breaker = Breaker::new(up.url(), fast_config()).unwrap();
        let svc = BreakerLayer::new(breaker.clone()).layer(client(up.addr()));
        for _ in 0..3 {
            let res = svc.clone().oneshot(req()).await.unwrap();
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        }
        assert_eq!(breaker.state(), State::Open);
        for _ in 0..5 {
            assert!(svc.clone().oneshot(req()).await.unwrap_err().is_open());
        }
        assert_eq!(up.requests(), 3, "open circuit sends nothing upstream");

        up.set_json(200, r#"{"ok":true}"#);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let res = svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(&res.into_body()[..], br#"{"ok":true}"#);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(up.requests(), 4);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slow_upstream_times_out_and_opens() {
    tokio::time::timeout(LIMIT, async {
        let up = HttpUpstream::builder()
            .latency(Duration::from_secs(3))
            .start()
            .await
            .unwrap();
        let breaker = Breaker::new(up.url(), fast_config()).unwrap();
        let svc = BreakerLayer::new(breaker.clone()).layer(client(up.addr()));
        // Three concurrent slow calls all time out at 300 ms.
        let started = std::time::Instant::now();
        let (a, b, c) = tokio::join!(
            svc.clone().oneshot(req()),
            svc.clone().oneshot(req()),
            svc.clone().oneshot(req()),
        );
        for r in [a, b, c] {
            assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "timed out early, not after the upstream's 3 s"
        );
        assert_eq!(breaker.state(), State::Open);
        let before = up.requests();
        assert!(svc.clone().oneshot(req()).await.unwrap_err().is_open());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(up.requests(), before);

        // Half-open probe against a fast upstream closes it.
        up.set_latency(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(350)).await;
        svc.clone().oneshot(req()).await.unwrap();
        assert_eq!(breaker.state(), State::Closed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn killed_upstream_opens_and_restart_closes() {
    tokio::time::timeout(LIMIT, async {
        let up = HttpUpstream::start().await.unwrap();
        let breaker = Breaker::new(up.url(), fast_config()).unwrap();
        let svc = BreakerLayer::new(breaker.clone()).layer(client(up.addr()));
        for _ in 0..5 {
            assert_eq!(
                svc.clone().oneshot(req()).await.unwrap().status(),
                StatusCode::OK
            );
        }
        up.stop().await;
        // 5 successes then refused connections: 5 ok + 3 failed = 37%, 5 + 6 = 54% > 50%.
        let mut refused = 0;
        while breaker.state() == State::Closed {
            let err = svc.clone().oneshot(req()).await.unwrap_err();
            assert!(matches!(err, Error::Inner(_)), "{err}");
            refused += 1;
            assert!(refused <= 6, "breaker should have opened");
        }
        assert_eq!(refused, 6);
        assert!(svc.clone().oneshot(req()).await.unwrap_err().is_open());
        let snap = breaker.snapshot();
        assert_eq!((snap.successes, snap.failures, snap.rejected), (5, 6, 1));

        up.restart().await.unwrap();
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(
            svc.clone().oneshot(req()).await.unwrap().status(),
            StatusCode::OK
        );
        assert_eq!(breaker.state(), State::Closed);
    })
    .await
    .unwrap();
}
