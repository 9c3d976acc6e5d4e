//! Test harness: a gateway served on a real loopback socket, upstreams from
//! `nexus-testkit`, and a minimal HTTP/1.1 client over real TCP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use nexus_gateway::auth::sha256_hex;
use nexus_gateway::blocklist::Blocklist;
use nexus_gateway::events::EventSink;
use nexus_gateway::{Gateway, GatewayConfig};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Signing secret used by the tests (>= 32 bytes).
pub const SECRET: &str = "test-signing-secret-0123456789-abcdef";
/// Client of the tests.
pub const CLIENT_ID: &str = "test-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "test-client-secret-value";
/// Bound on every single HTTP exchange in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// An HTTP response, fully read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `services.json` text for the given base URLs.
/// A breaker section that opens after 3 calls at 50 % failures and stays open
/// for the rest of a test.
pub const BREAKER_YAML: &str =
    "breaker:\n  error_threshold_percent: 50\n  volume_threshold: 3\n  reset_timeout_ms: 30000\n";

pub fn services_json(urls: &[String]) -> String {
    let list: Vec<_> = urls
        .iter()
        .map(|u| serde_json::json!({ "url": u, "weight": 1 }))
        .collect();
    serde_json::json!({ "services": list }).to_string()
}

/// Base YAML: a strong secret, one test client, a quota high enough not to
/// interfere, fast retries and discovery. `extra` is appended (top-level keys
/// must not repeat those here, so sections that tests change are built by them).
pub fn yaml(services: &std::path::Path, rate_capacity: u32, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\n\
         auth:\n  signing_secret: {SECRET}\n  clients:\n    - id: {CLIENT_ID}\n      secret_sha256: {}\n\
         rate_limit:\n  capacity: {rate_capacity}\n  refill_per_sec: 1\n\
         {extra}",
        sha256_hex(CLIENT_SECRET),
    )
    .replace("@SERVICES@", &services.display().to_string())
}

/// Default proxy section pointing at `@SERVICES@`.
pub const PROXY: &str = "proxy:\n  services_file: \"@SERVICES@\"\n  retry_backoff_ms: 10\n  discovery_poll_ms: 100\n  timeout_ms: 2000\n";

impl TestGateway {
    /// Starts a gateway whose `services.json` lists `urls`, with `yaml_extra`
    /// (use [`PROXY`] unless the test needs its own proxy section).
    pub async fn start(urls: &[String], rate_capacity: u32, yaml_extra: &str) -> Result<Self> {
        Self::start_with(urls, rate_capacity, yaml_extra, None).await
    }

    pub async fn start_with(
        urls: &[String],
        rate_capacity: u32,
        yaml_extra: &str,
        blocklist: Option<Arc<dyn Blocklist>>,
    ) -> Result<Self> {
        Self::start_full(urls, rate_capacity, yaml_extra, blocklist, None).await
    }

    pub async fn start_full(
        urls: &[String],
        rate_capacity: u32,
        yaml_extra: &str,
        blocklist: Option<Arc<dyn Blocklist>>,
        events: Option<Arc<dyn EventSink>>,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let services = dir.path().join("services.json");
        std::fs::write(&services, services_json(urls))?;
        let text = yaml(&services, rate_capacity, yaml_extra);
        let settings = GatewayConfig::from_yaml(&text)?.validate(|_| None)?;
        let mut builder = Gateway::builder(settings);
        if let Some(b) = blocklist {
            builder = builder.blocklist(b);
        }
        if let Some(e) = events {
            builder = builder.event_sink(e);
        }
        let gateway = builder.build()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = gateway
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn services_path(&self) -> PathBuf {
        self.dir.path().join("services.json")
    }

    /// Signals shutdown and waits (bounded) for the server to finish draining.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .context("drain timed out")??;
        }
        Ok(())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        send(self.addr, b.body(Bytes::new())?).await
    }

    pub async fn post_json(&self, path: &str, body: &str) -> Result<Reply> {
        let req = Request::post(path)
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_owned()))?;
        send(self.addr, req).await
    }

    /// Issues a token for the test client.
    /// The `/cb-stats` entry of endpoint `url`.
    pub async fn circuit(&self, token: &str, url: &str) -> Result<serde_json::Value> {
        let cb = self.get("/cb-stats", Some(token)).await?.json();
        cb["circuits"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["endpoint"] == url))
            .cloned()
            .with_context(|| format!("no circuit for {url}: {cb}"))
    }

    /// Asserts the circuit of endpoint `url` is closed and counted no failure.
    pub async fn assert_closed_without_failures(&self, token: &str, url: &str) -> Result<()> {
        let c = self.circuit(token, url).await?;
        assert_eq!(c["state"], "closed", "{c}");
        assert_eq!(c["failures"], 0, "{c}");
        Ok(())
    }

    pub async fn token(&self) -> Result<String> {
        let r = self
            .post_json(
                "/auth/token",
                &format!(r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#),
            )
            .await?;
        anyhow::ensure!(
            r.status == StatusCode::OK,
            "token: {} {:?}",
            r.status,
            r.body
        );
        Ok(r.json()["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and reads the whole reply.
/// A `GET path` with a bearer token, sent from a task of its own (for a
/// request that must be in flight while the test does something else).
pub fn spawn_get(addr: SocketAddr, path: &'static str, token: String) -> JoinHandle<Result<Reply>> {
    tokio::spawn(async move {
        send(
            addr,
            Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(Bytes::new())?,
        )
        .await
    })
}

/// A raw HTTP/1.1 upstream for scripted misbehaviour (stalls, pauses, bodies
/// no well-behaved server sends): for each connection it reads one request
/// head, then hands the stream to `answer`. Returns its URL.
pub async fn raw_upstream<F, Fut>(answer: F) -> Result<String>
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                answer(s).await;
            });
        }
    });
    Ok(url)
}

/// [`PROXY`] with `proxy.timeout_ms` and `proxy.body_idle_timeout_ms` set.
pub fn proxy_timeouts(timeout_ms: u64, body_idle_ms: u64) -> String {
    PROXY.replace(
        "timeout_ms: 2000",
        &format!("timeout_ms: {timeout_ms}\n  body_idle_timeout_ms: {body_idle_ms}"),
    )
}

pub async fn send(addr: SocketAddr, mut req: Request<Bytes>) -> Result<Reply> {
    if !req.headers().contains_key("host") {
        req.headers_mut().insert("host", addr.to_string().parse()?);
    }
    let fut = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let (parts, body) = req.into_parts();
        let res = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, anyhow::Error>(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(IO_TIMEOUT, fut)
        .await
        .context("request timed out")?
}

/// Polls `f` every 50 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second, always-live dispatcher that is interested in nothing.
///
/// `tracing-core` caches each callsite's interest process-wide. While exactly
/// one dispatcher is registered, a callsite hit for the first time is asked
/// only of the *hitting thread's* default (`Rebuilder::JustOne`): when that is
/// another test's thread without a subscriber, the callsite is cached as
/// "never" and its spans are skipped on our thread too. Seen here: the entry
/// layer's `request` span vanished (no `traceparent` header) whenever this
/// module ran beside any subscriber-less gateway test, never with
/// `--test-threads 1`. With two dispatchers registered, interest is the union
/// over all of them, so our subscriber is always asked.
pub(crate) struct Keeper;

impl tracing::Subscriber for Keeper {
    fn register_callsite(
        &self,
        _: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::OFF)
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

static KEEPER: std::sync::LazyLock<tracing::Dispatch> =
    std::sync::LazyLock::new(|| tracing::Dispatch::new(Keeper));

/// Registers [`Keeper`] (once per process): call before installing a test's
/// own subscriber, so that no callsite's interest is cached as "never" by a
/// thread that has none.
pub(crate) fn keep_callsite_interest() {
    std::sync::LazyLock::force(&KEEPER);
}
