//! Shared helpers: real Redis servers from the test kit, a proxy in front of one
//! of them, and a raw RESP connection that reads exactly N reply frames.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use nexus_cache::{Metrics, Proxy, ProxyConfig, ProxyConfigBuilder};
use nexus_resp::{Limits, Scanner};
use nexus_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Every network wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running proxy.
pub struct ProxyHandle {
    pub addr: SocketAddr,
    pub metrics: std::sync::Arc<Metrics>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

impl ProxyHandle {
    /// Starts a proxy in front of `upstream_url`, with `tune` applied to the builder.
    pub async fn start(
        upstream_url: &str,
        tune: impl FnOnce(ProxyConfigBuilder) -> ProxyConfigBuilder,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let builder = ProxyConfig::builder()
            .listen(addr)
            .upstream(upstream_url)
            .connect_timeout(Duration::from_secs(2))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
            .shutdown_grace(Duration::from_secs(2));
        let proxy = Proxy::new(tune(builder).build()?);
        let metrics = proxy.metrics();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            proxy
                .serve(listener, token.cancelled_owned())
                .await
                .unwrap();
        });
        Ok(Self {
            addr,
            metrics,
            shutdown,
            task,
        })
    }

    /// Stops the proxy and waits (bounded) for it to finish.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("proxy did not stop")??;
        Ok(())
    }
}

/// Two Redis servers: `direct` is talked to directly, `behind` through the proxy,
/// so both start from the same (empty) state.
pub struct Pair {
    pub direct: RedisServer,
    pub behind: RedisServer,
    pub proxy: ProxyHandle,
}

impl Pair {
    pub async fn start() -> Result<Self> {
        Self::start_with(None, |b| b).await
    }

    pub async fn start_with(
        password: Option<&str>,
        tune: impl FnOnce(ProxyConfigBuilder) -> ProxyConfigBuilder,
    ) -> Result<Self> {
        let mut builder = RedisServer::builder();
        if let Some(p) = password {
            builder = builder.password(p);
        }
        let mut servers = builder.start_many(2).await?;
        let behind = servers.pop().unwrap();
        let direct = servers.pop().unwrap();
        let proxy = ProxyHandle::start(&behind.url(), tune).await?;
        Ok(Self {
            direct,
            behind,
            proxy,
        })
    }

    /// Runs the same script of `(bytes, replies)` steps on fresh connections to
    /// Redis and to the proxy and returns both transcripts.
    pub async fn both(&self, steps: &[(&[u8], usize)]) -> Result<(Vec<u8>, Vec<u8>)> {
        let direct = transcript(self.direct.addr(), steps)
            .await
            .context("direct")?;
        let proxied = transcript(self.proxy.addr, steps)
            .await
            .context("proxied")?;
        Ok((direct, proxied))
    }

    /// Asserts that the script produces byte-identical replies both ways.
    pub async fn assert_same(&self, steps: &[(&[u8], usize)]) -> Result<Vec<u8>> {
        let (direct, proxied) = self.both(steps).await?;
        if direct != proxied {
            bail!(
                "replies differ\n direct: {}\nproxied: {}",
                show(&direct),
                show(&proxied)
            );
        }
        Ok(direct)
    }
}

/// Sends each step's bytes in one write and reads exactly its number of replies.
pub async fn transcript(addr: SocketAddr, steps: &[(&[u8], usize)]) -> Result<Vec<u8>> {
    let mut conn = Conn::connect(addr).await?;
    let mut out = Vec::new();
    for (bytes, replies) in steps {
        conn.send(bytes).await?;
        out.extend(conn.read_frames(*replies).await?);
    }
    Ok(out)
}

/// Printable form of RESP bytes for failure messages (truncated).
pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(600)]).replace("\r\n", "⏎");
    format!("{s}{}", if b.len() > 600 { "…" } else { "" })
}

/// Encodes a command as a RESP array.
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    nexus_resp::encode::command(&mut out, args);
    out
}

/// A raw client connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
    scanner: Scanner,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await??;
        stream.set_nodelay(true)?;
        let limits = Limits {
            max_bulk_len: 1 << 30,
            max_elements: 1 << 24,
            ..Limits::default()
        };
        Ok(Self {
            stream,
            buf: BytesMut::new(),
            scanner: Scanner::new(limits).inline(false),
        })
    }

    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes)).await??;
        Ok(())
    }

    /// Reads exactly `n` complete reply frames (bounded by [`WAIT`]).
    pub async fn read_frames(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut got = 0;
        while got < n {
            if let Some(len) = self.scanner.scan(&self.buf)? {
                out.extend_from_slice(&self.buf.split_to(len));
                got += 1;
                continue;
            }
            self.buf.reserve(64 * 1024);
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .with_context(|| format!("timed out after {got}/{n} replies"))??;
            if read == 0 {
                bail!("connection closed after {got}/{n} replies: {}", show(&out));
            }
        }
        Ok(out)
    }

    /// Sends one command and reads its reply.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Vec<u8>> {
        self.send(&cmd(args)).await?;
        self.read_frames(1).await
    }

    /// Waits (bounded) for the peer to close; returns any bytes received first.
    pub async fn read_to_eof(&mut self) -> Result<Vec<u8>> {
        let mut rest = self.buf.split().to_vec();
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .context("no EOF")??;
        Ok(rest)
    }
}

/// A `NEXUS.STATS` field, read on `c`.
pub async fn stat(c: &mut Conn, name: &str) -> Result<u64> {
    let s = String::from_utf8_lossy(&c.call(&[b"NEXUS.STATS"]).await?).into_owned();
    let lines: Vec<&str> = s.split("\r\n").collect();
    let i = lines
        .iter()
        .position(|l| *l == name)
        .with_context(|| format!("{name} missing in {s}"))?;
    Ok(lines[i + 1].trim_start_matches(':').parse()?)
}

/// How many times Redis ran command `name` (lower case): `cmdstat_<name>:calls`
/// from `INFO commandstats` on a direct connection (0 when never called).
pub async fn command_calls(redis: &mut Conn, name: &str) -> Result<u64> {
    let info =
        String::from_utf8_lossy(&redis.call(&[b"INFO", b"commandstats"]).await?).into_owned();
    let needle = format!("cmdstat_{name}:calls=");
    Ok(info
        .find(&needle)
        .map(|i| {
            info[i + needle.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        })
        .unwrap_or(0))
}
