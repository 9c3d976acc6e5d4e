//! `proxy.http2: true`: the gateway speaks HTTP/2 (prior knowledge) to the upstream.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use bytes::Bytes;
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::harness::TestGateway;

/// A minimal h2c server answering JSON with the protocol version it saw.
async fn h2_upstream() -> Result<(String, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let h2_requests = Arc::new(AtomicU64::new(0));
    let seen = h2_requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    if req.version() == Version::HTTP_2 {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    let body = format!(
                        r#"{{"path":"{}","version":"{:?}"}}"#,
                        req.uri().path(),
                        req.version()
                    );
                    let mut res = Response::new(Full::new(Bytes::from(body)));
                    res.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/json"),
                    );
                    async move { Ok::<_, Infallible>(res) }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((url, h2_requests))
}

#[tokio::test]
async fn http2_to_the_upstream() -> Result<()> {
    let (url, h2_requests) = h2_upstream().await?;
    let extra = "proxy:\n  services_file: \"@SERVICES@\"\n  http2: true\n  retry_backoff_ms: 0\n";
    let gw = TestGateway::start(&[url], 1000, extra).await?;
    let token = gw.token().await?;
    for _ in 0..5 {
        let r = gw.get("/api/products", Some(&token)).await?;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(
            r.json()["data"],
            serde_json::json!({"path": "/products", "version": "HTTP/2.0"})
        );
    }
    assert_eq!(h2_requests.load(Ordering::SeqCst), 5);
    Ok(())
}
