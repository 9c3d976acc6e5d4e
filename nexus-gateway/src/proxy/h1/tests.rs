//! The HTTP/1.1 client against a hand-written upstream over real loopback TCP
//! (so each test decides exactly when the upstream closes a connection).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt as _, Either, Empty};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const BIG: usize = 100_000;
const LIMIT: Duration = Duration::from_secs(10);

/// Answers by path: `/small` (5 bytes), `/drop` (5 bytes, then closes 100 ms
/// later without having said so), `/close` (5 bytes with `Connection: close`), `/big` ([`BIG`]
/// bytes in ten writes), `/chunked` (chunked, 3 chunks), `/slow` (`/small` after
/// 200 ms), `/truncated` (declares 5 bytes, sends 2, closes).
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream));
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn authority(&self) -> Authority {
        self.addr.to_string().parse().unwrap()
    }
}

/// One connection: requests in sequence until the client or the path closes it.
async fn serve(mut stream: TcpStream) {
    let mut buf = Vec::new();
    loop {
        let Some(path) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        let small = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        let keep = match path.as_str() {
            "/small" => stream.write_all(small.as_bytes()).await.is_ok(),
            "/slow" => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                stream.write_all(small.as_bytes()).await.is_ok()
            }
            "/drop" => {
                let _ = stream.write_all(small.as_bytes()).await;
                // Later than the client's read of the answer, so the connection
                // is idle in the pool when it closes.
                tokio::time::sleep(Duration::from_millis(100)).await;
                false
            }
            "/close" => {
                let r = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                let _ = stream.write_all(r.as_bytes()).await;
                false
            }
            "/truncated" => {
                let r = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhe";
                let _ = stream.write_all(r.as_bytes()).await;
                false
            }
            "/big" => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {BIG}\r\n\r\n");
                let mut ok = stream.write_all(head.as_bytes()).await.is_ok();
                for _ in 0..10 {
                    ok = ok && stream.write_all(&[b'x'; BIG / 10]).await.is_ok();
                    tokio::task::yield_now().await;
                }
                ok
            }
            "/chunked" => {
                let r = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n";
                stream.write_all(r.as_bytes()).await.is_ok()
            }
            _ => false,
        };
        if !keep {
            return; // dropped: FIN, with no `Connection: close` for `/drop`
        }
    }
}

/// Reads one request head (and its `content-length` body); `None` at EOF.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..end + 4 + len);
            return head.split(' ').nth(1).map(str::to_owned);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn get(addr: SocketAddr, path: &str) -> Request<UpstreamBody> {
    Request::get(format!("http://{addr}{path}"))
        .header(header::HOST, addr.to_string())
        .body(Either::Right(Empty::<Bytes>::new()))
        .unwrap()
}

/// Sends a GET and reads the whole body; also says whether it came read already.
async fn fetch(client: &H1Client, addr: SocketAddr, path: &str) -> (Bytes, bool) {
    let res = tokio::time::timeout(LIMIT, client.request(get(addr, path)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);
    let full = matches!(res.body(), GatewayBody::Full(_));
    let body = tokio::time::timeout(LIMIT, res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (body, full)
}

/// Waits (bounded) until the pool holds `n` idle connections for the upstream.
async fn idle_becomes(client: &H1Client, up: &Upstream, n: usize) {
    let a = up.authority();
    tokio::time::timeout(LIMIT, async {
        while client.inner.pool.idle_count(&a) != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("idle connections never became {n}"));
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let up = Upstream::start().await;
    let client = H1Client::new(8, LIMIT);
    for _ in 0..5 {
        let (body, full) = fetch(&client, up.addr, "/small").await;
        assert_eq!(body, "hello");
        assert!(full, "a small body of known length is read by the client");
        assert_eq!(client.inner.pool.idle_count(&up.authority()), 1);
    }
    assert_eq!(
        up.accepted(),
        1,
        "keep-alive: one connection for 5 requests"
    );
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_and_the_request_succeeds() {
    let up = Upstream::start().await;
    let client = H1Client::new(8, LIMIT);
    assert_eq!(fetch(&client, up.addr, "/drop").await.0, "hello");
    // The upstream closed it without `Connection: close`: the pool still holds it.
    assert_eq!(client.inner.pool.idle_count(&up.authority()), 1);
    tokio::time::sleep(Duration::from_millis(300)).await; // the FIN arrives
    assert_eq!(fetch(&client, up.addr, "/small").await.0, "hello");
    assert_eq!(up.accepted(), 2, "resent on a new connection");
    assert_eq!(fetch(&client, up.addr, "/small").await.0, "hello");
    assert_eq!(up.accepted(), 2, "and that one is kept");
}

#[tokio::test]
async fn connection_close_is_not_pooled() {
    let up = Upstream::start().await;
    let client = H1Client::new(8, LIMIT);
    assert_eq!(fetch(&client, up.addr, "/close").await.0, "hello");
    assert_eq!(client.inner.pool.idle_count(&up.authority()), 0);
    assert_eq!(fetch(&client, up.addr, "/small").await.0, "hello");
    assert_eq!(up.accepted(), 2);
}

#[tokio::test]
async fn large_and_chunked_bodies_stream_and_the_connection_comes_back() {
    let up = Upstream::start().await;
    let client = H1Client::new(8, LIMIT);
    let (body, full) = fetch(&client, up.addr, "/big").await;
    assert!(!full, "a body over SMALL_BODY streams");
    assert_eq!(body.len(), BIG);
    assert!(body.iter().all(|b| *b == b'x'));
    idle_becomes(&client, &up, 1).await;
    let (body, full) = fetch(&client, up.addr, "/chunked").await;
    assert!(!full, "a body of unknown length streams");
    assert_eq!(body, "abcdef");
    idle_becomes(&client, &up, 1).await;
    assert_eq!(fetch(&client, up.addr, "/small").await.0, "hello");
    assert_eq!(
        up.accepted(),
        1,
        "the streamed exchanges kept the connection"
    );
}

#[tokio::test]
async fn idle_connections_are_bounded_per_endpoint() {
    let up = Upstream::start().await;
    let client = H1Client::new(2, LIMIT);
    let calls = (0..4).map(|_| fetch(&client, up.addr, "/slow"));
    let bodies = futures_util::future::join_all(calls).await;
    assert!(bodies.iter().all(|(b, _)| b == "hello"));
    assert_eq!(
        up.accepted(),
        4,
        "four concurrent requests, four connections"
    );
    assert_eq!(client.inner.pool.idle_count(&up.authority()), 2);

    let unpooled = H1Client::new(0, LIMIT);
    fetch(&unpooled, up.addr, "/small").await;
    fetch(&unpooled, up.addr, "/small").await;
    assert_eq!(unpooled.inner.pool.idle_count(&up.authority()), 0);
    assert_eq!(up.accepted(), 6, "max idle 0: a connection per request");
}

#[tokio::test]
async fn failures_are_errors_not_hangs() {
    let client = H1Client::new(8, LIMIT);
    // Nothing listens on a port just released.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = tokio::time::timeout(LIMIT, client.request(get(addr, "/small")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Connect { .. }), "{err}");

    let up = Upstream::start().await;
    let err = tokio::time::timeout(LIMIT, client.request(get(up.addr, "/truncated")))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Body(_)), "{err}");
    assert_eq!(client.inner.pool.idle_count(&up.authority()), 0);

    let mut https = get(up.addr, "/small");
    *https.uri_mut() = format!("https://{}/small", up.addr).parse().unwrap();
    let err = client.request(https).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Target(_)), "{err}");
}
