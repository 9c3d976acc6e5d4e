//! The layer in a real axum server over loopback TCP, hit by a hyper client.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::{Router, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use nexus_ratelimit::{KeyedLimiter, LimiterConfig, PeerIp, Quota, RateLimitLayer};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(layer: RateLimitLayer<PeerIp>) -> Server {
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Server { addr, task }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get_status(
    sender: &mut Sender,
    xff: Option<&str>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut b = Request::get("/").header("host", "localhost");
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let res = tokio::time::timeout(LIMIT, sender.send_request(b.body(Empty::new()).unwrap()))
        .await
        .unwrap()
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = tokio::time::timeout(LIMIT, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn limits_a_real_client_by_its_socket_address() {
    let quota = Quota::per_second(5.try_into().unwrap(), 1.try_into().unwrap());
    let server = serve(RateLimitLayer::new(
        KeyedLimiter::new(LimiterConfig::new(quota)),
        PeerIp::new(),
    ))
    .await;
    let mut client = connect(server.addr).await;
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..8 {
        // A spoofed X-Forwarded-For is ignored when no proxy is trusted.
        let (status, headers, body) = get_status(&mut client, Some("1.1.1.1")).await;
        match status {
            StatusCode::OK => {
                ok += 1;
                assert_eq!(&body[..], b"hello");
                assert!(headers.contains_key("ratelimit"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(headers.contains_key("retry-after"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // 5 burst; at most one more token can refill during the run.
    assert!((5..=6).contains(&ok), "ok = {ok}");
    assert_eq!(ok + limited, 8);
    // A second connection from the same IP shares the bucket.
    let mut other = connect(server.addr).await;
    let (status, _, _) = get_status(&mut other, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn trusted_proxy_depth_keys_by_forwarded_client() {
    let quota = Quota::per_second(2.try_into().unwrap(), 1.try_into().unwrap());
    let layer = RateLimitLayer::new(
        KeyedLimiter::new(LimiterConfig::new(quota)),
        PeerIp::new().trusted_proxies(1),
    );
    let server = serve(layer).await;
    let mut client = connect(server.addr).await;
    for _ in 0..2 {
        assert_eq!(
            get_status(&mut client, Some("9.9.9.9, 203.0.113.1"))
                .await
                .0,
            StatusCode::OK
        );
    }
    // Same client behind the proxy, different spoofed prefix: still limited.
    assert_eq!(
        get_status(&mut client, Some("8.8.8.8, 203.0.113.1"))
            .await
            .0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A different client through the same proxy has its own bucket.
    assert_eq!(
        get_status(&mut client, Some("203.0.113.2")).await.0,
        StatusCode::OK
    );
}
