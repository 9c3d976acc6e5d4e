//! HttpUpstream behaviours, checked over real TCP with hyper's client.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use nexus_testkit::{ECHO_PATH, Error, HttpUpstream, UPSTREAM_HEADER};
use tokio::{net::TcpStream, time::timeout};

const BOUND: Duration = Duration::from_secs(5);

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
    let stream = timeout(BOUND, TcpStream::connect(addr)).await??;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let response = timeout(BOUND, sender.send_request(request)).await??;
    let (parts, body) = response.into_parts();
    let body = timeout(BOUND, body.collect()).await??.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", "upstream")
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn answers_the_default_json_and_counts() {
    let up = HttpUpstream::start().await.unwrap();
    assert_eq!(up.url(), format!("http://{}", up.addr()));
    assert_eq!(up.requests(), 0);
    let reply = send(up.addr(), get("/anything")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, r#"{"ok":true}"#);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers[UPSTREAM_HEADER], up.addr().to_string());
    assert_eq!(up.requests(), 1);
    assert_eq!(up.last_request().unwrap().uri, "/anything");
}

#[tokio::test]
async fn fixed_json_status_and_name() {
    let up = HttpUpstream::builder()
        .json(201, r#"{"id":7}"#)
        .name("users-a")
        .start()
        .await
        .unwrap();
    let reply = send(up.addr(), get("/users")).await.unwrap();
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.body, r#"{"id":7}"#);
    assert_eq!(reply.headers[UPSTREAM_HEADER], "users-a");
}

#[tokio::test]
async fn status_and_body_change_while_running() {
    let up = HttpUpstream::start().await.unwrap();
    up.set_status(503);
    let reply = send(up.addr(), get("/")).await.unwrap();
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.body, r#"{"ok":true}"#);
    up.set_json(404, r#"{"error":"nope"}"#);
    let reply = send(up.addr(), get("/")).await.unwrap();
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body, r#"{"error":"nope"}"#);
}

#[tokio::test]
async fn latency_delays_answers_and_the_request_is_counted_on_arrival() {
    let up = HttpUpstream::builder()
        .latency(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    send(up.addr(), get("/")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    up.set_latency(Duration::from_secs(30));
    let slow = timeout(Duration::from_millis(200), send(up.addr(), get("/"))).await;
    assert!(slow.is_err(), "answer should take 30 s");
    assert_eq!(up.requests(), 2);

    up.set_latency(Duration::ZERO);
    let started = std::time::Instant::now();
    send(up.addr(), get("/")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

async fn failure_pattern(seed: u64, rate: f64, n: usize) -> Vec<bool> {
    let up = HttpUpstream::builder()
        .failure_rate(rate)
        .seed(seed)
        .start()
        .await
        .unwrap();
    let mut failed = Vec::with_capacity(n);
    for _ in 0..n {
        let reply = send(up.addr(), get("/")).await.unwrap();
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::INTERNAL_SERVER_ERROR,
            "{}",
            reply.status
        );
        failed.push(reply.status == StatusCode::INTERNAL_SERVER_ERROR);
    }
    failed
}

#[tokio::test]
async fn failure_rate_is_honoured_and_seedable() {
    let a = failure_pattern(42, 0.5, 200).await;
    let b = failure_pattern(42, 0.5, 200).await;
    assert_eq!(a, b, "same seed, same failures");
    let failures = a.iter().filter(|f| **f).count();
    assert!((60..=140).contains(&failures), "{failures} of 200 failed");
    assert!(failure_pattern(1, 1.0, 20).await.iter().all(|f| *f));
    assert!(!failure_pattern(1, 0.0, 20).await.iter().any(|f| *f));
}

#[tokio::test]
async fn failure_status_is_configurable() {
    let up = HttpUpstream::builder()
        .failure_rate(1.0)
        .failure_status(502)
        .start()
        .await
        .unwrap();
    let reply = send(up.addr(), get("/")).await.unwrap();
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body, r#"{"error":"injected failure"}"#);
}

#[tokio::test]
async fn echo_endpoint_returns_the_request() {
    let up = HttpUpstream::builder()
        .failure_rate(1.0)
        .start()
        .await
        .unwrap();
    let request = Request::post(format!("{ECHO_PATH}?q=1"))
        .header("host", "upstream")
        .header("x-request-id", "abc")
        .header("x-multi", "one")
        .header("x-multi", "two")
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = send(up.addr(), request).await.unwrap();
    // The echo ignores the script (failure rate 1.0 here).
    assert_eq!(reply.status, StatusCode::OK);
    let echo: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/_echo?q=1");
    assert_eq!(echo["headers"]["x-request-id"], "abc");
    assert_eq!(echo["headers"]["x-multi"], "one, two");
    assert_eq!(echo["body"], "hello");
    let headers = up.last_headers().unwrap();
    assert_eq!(headers["x-request-id"], "abc");
    assert_eq!(up.last_request().unwrap().body, "hello");
}

#[tokio::test]
async fn stop_refuses_and_restart_serves_on_the_same_port() {
    let up = HttpUpstream::start().await.unwrap();
    let addr = up.addr();
    send(addr, get("/")).await.unwrap();

    up.stop().await;
    assert!(!up.is_running());
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "stopped upstream accepted"
    );

    up.restart().await.unwrap();
    assert!(up.is_running());
    assert_eq!(up.addr(), addr);
    let reply = send(addr, get("/")).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(up.requests(), 2, "counts survive a restart");
    up.reset_requests();
    assert_eq!(up.requests(), 0);
    assert!(up.recorded_requests().is_empty());
}

#[tokio::test]
async fn stop_closes_open_connections() {
    let up = HttpUpstream::builder()
        .latency(Duration::from_secs(30))
        .start()
        .await
        .unwrap();
    let addr = up.addr();
    let pending = tokio::spawn(async move { send(addr, get("/")).await.map(|r| r.status) });
    while up.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    up.stop().await;
    let outcome = timeout(BOUND, pending).await.unwrap().unwrap();
    assert!(
        outcome.is_err(),
        "in-flight request should fail, got {outcome:?}"
    );
}

#[tokio::test]
async fn abort_drops_connections_unanswered() {
    let up = HttpUpstream::start().await.unwrap();
    up.set_abort(true);
    assert!(send(up.addr(), get("/")).await.is_err());
    up.set_abort(false);
    assert_eq!(
        send(up.addr(), get("/")).await.unwrap().status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn oversized_bodies_are_rejected() {
    let up = HttpUpstream::start().await.unwrap();
    let big = Bytes::from(vec![b'x'; nexus_testkit::MAX_BODY_BYTES + 1]);
    let request = Request::post("/")
        .header("host", "upstream")
        .body(Full::new(big))
        .unwrap();
    let reply = send(up.addr(), request).await.unwrap();
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn keep_alive_connections_serve_many_requests() {
    let up = HttpUpstream::start().await.unwrap();
    let stream = TcpStream::connect(up.addr()).await.unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    for _ in 0..10 {
        let response = sender.send_request(get("/")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(up.requests(), 10);
}

#[tokio::test]
async fn invalid_options_are_typed_errors() {
    let err = HttpUpstream::builder()
        .failure_rate(1.5)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "failure_rate",
                ..
            }
        ),
        "{err}"
    );
    let err = HttpUpstream::builder()
        .json(1000, "{}")
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { option: "json", .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_busy_fixed_port_is_an_error() {
    let up = HttpUpstream::start().await.unwrap();
    let err = HttpUpstream::builder()
        .port(up.addr().port())
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io(_)), "{err}");
}
