//! Minimal fire-and-forget JSON webhook over HTTP/1.1 (plain `http://` only).
//!
//! Posts run in spawned tasks, at most [`MAX_IN_FLIGHT`] at a time (more are
//! dropped and counted), each bounded by [`TIMEOUT`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Concurrent posts allowed.
pub const MAX_IN_FLIGHT: usize = 8;
/// Bound on one post (connect, write, read status line).
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// A parsed webhook target.
#[derive(Debug, Clone)]
pub struct Webhook {
    authority: String,
    path: String,
    permits: Arc<Semaphore>,
    failures: Arc<AtomicU64>,
}

impl Webhook {
    /// Parses an `http://host:port/path` URL.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err("only http:// webhooks are supported".into());
        }
        let host = uri.host().ok_or("missing host")?;
        let port = uri.port_u16().unwrap_or(80);
        Ok(Self {
            authority: format!("{host}:{port}"),
            path: uri
                .path_and_query()
                .map_or("/".into(), |p| p.as_str().to_owned()),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            failures: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Posts failed, timed out or dropped so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Posts `body` in the background; never blocks the caller.
    pub fn post(&self, body: String) {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            let res = tokio::time::timeout(TIMEOUT, me.send(&body)).await;
            let ok = matches!(res, Ok(Ok(status)) if (200..300).contains(&status));
            if !ok {
                me.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target = %me.authority, result = ?res, "alert webhook failed");
            }
            drop(permit);
        });
    }

    async fn send(&self, body: &str) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(&self.authority).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await?;
        // "HTTP/1.1 200 ..."
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("malformed status line"))
    }
}
