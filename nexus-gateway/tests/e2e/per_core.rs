//! `Gateway::serve_per_core`: several current-thread runtimes on `SO_REUSEPORT`
//! sockets serve the whole stack (auth, proxy) and drain on shutdown.

use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_gateway::{Gateway, GatewayConfig, ReusePortListeners};
use nexus_testkit::HttpUpstream;

use crate::harness::{CLIENT_ID, CLIENT_SECRET, PROXY, send, services_json, yaml};

#[tokio::test]
async fn per_core_workers_serve_and_drain() -> Result<()> {
    let up = HttpUpstream::start().await?;
    let dir = tempfile::tempdir()?;
    let services = dir.path().join("services.json");
    std::fs::write(&services, services_json(&[up.url()]))?;
    let settings = GatewayConfig::from_yaml(&yaml(&services, 1000, PROXY))?.validate(|_| None)?;
    let gateway = Gateway::builder(settings).build()?;
    let workers = NonZeroUsize::new(2).context("two")?;
    let listeners = ReusePortListeners::bind("127.0.0.1:0".parse()?, workers)?;
    let addr = listeners.local_addr();
    assert_ne!(addr.port(), 0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway.serve_per_core(listeners, async {
        let _ = rx.await;
    }));

    let body = format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#);
    let req = Request::post("/auth/token")
        .header("content-type", "application/json")
        .body(Bytes::from(body))?;
    let r = send(addr, req).await?;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let token = r.json()["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned();
    // Each request is a new connection, so the kernel spreads them over both workers.
    for _ in 0..20 {
        let req = Request::get("/api/products")
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())?;
        let r = send(addr, req).await?;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert!(r.header("x-request-id").is_some());
        let missing = send(addr, Request::get("/api/products").body(Bytes::new())?).await?;
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    }
    assert!(
        up.requests() >= 20,
        "upstream saw {} requests",
        up.requests()
    );

    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .context("drain timed out")???;
    assert!(
        send(addr, Request::get("/health").body(Bytes::new())?)
            .await
            .is_err(),
        "workers still accepting after shutdown"
    );
    Ok(())
}
