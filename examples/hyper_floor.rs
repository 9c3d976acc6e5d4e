//! A bare hyper reverse proxy: the gateway's HTTP libraries with none of its layers.
//!
//! ```text
//! cargo run --release --example hyper_floor -- --port 8081 --upstream http://127.0.0.1:3001
//! ```
//!
//! This is a measuring stick for `benches/load/gateway.sh`, not a product: it forwards
//! `/api/*` to the upstream with the `/api` prefix stripped, using exactly the server
//! and client set-up the gateway uses (one current-thread runtime per core on
//! `SO_REUSEPORT` listeners, hyper-util's `auto` server with the same header-read
//! timeout, hyper-util's pooled client with `TCP_NODELAY`, the same idle-pool size,
//! mimalloc), and nothing else: no request id, auth, rate limit, balancing, breaker,
//! retry, transforms, metrics or telemetry. Its CPU per request is the floor the
//! gateway's layer stack sits on; the difference to the gateway is what the layers
//! cost. Errors answer 502 with the reason; it never panics on a request.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

/// The allocator the gateway example uses, so the comparison is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
Usage: hyper_floor --upstream http://HOST:PORT [--port PORT] [--workers N]

  --upstream URL  origin to forward /api/* to (http only)
  --port PORT     port on 127.0.0.1                     [default: 8081]
  --workers N     threads, one current-thread runtime each [default: cores]";

/// Same value as the gateway's header-read timeout.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = BoxBody<Bytes, hyper::Error>;
type UpstreamClient = Client<HttpConnector, Incoming>;

struct Args {
    port: u16,
    upstream: String,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut port = 8081;
    let mut upstream = None;
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--upstream" => upstream = Some(value()?),
            "--workers" => workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let upstream = upstream.ok_or("--upstream is required")?;
    let uri: Uri = upstream.parse().map_err(|e| format!("--upstream: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("--upstream must be http://HOST:PORT".into());
    }
    if workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let upstream = upstream.trim_end_matches('/').to_owned();
    Ok(Args {
        port,
        upstream,
        workers,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("hyper_floor: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listeners = match (0..args.workers)
        .map(|_| listener(addr))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("hyper_floor: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "hyper_floor: listening on {addr}, forwarding /api/* to {}",
        args.upstream
    );
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let upstream = args.upstream.clone();
            std::thread::spawn(move || worker(l, upstream))
        })
        .collect();
    let mut code = ExitCode::SUCCESS;
    for t in threads {
        if let Err(e) = t
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
        {
            eprintln!("hyper_floor: {e}");
            code = ExitCode::FAILURE;
        }
    }
    code
}

/// A listening `SO_REUSEPORT` socket (std, registered by the worker's own runtime).
fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = rt.enter();
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

fn worker(listener: std::net::TcpListener, upstream: String) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: UpstreamClient = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .keep_alive(true);
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("hyper_floor: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let upstream = upstream.clone();
            let service =
                hyper::service::service_fn(move |req| forward(client.clone(), &upstream, req));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
    })
}

/// Forwards one request: `/api/x` to `{upstream}/x`, `Host` set by the client.
fn forward(
    client: UpstreamClient,
    upstream: &str,
    mut req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, hyper::Error>> + use<> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = path
        .strip_prefix("/api")
        .filter(|rest| rest.starts_with('/'))
        .and_then(|rest| format!("{upstream}{rest}").parse::<Uri>().ok());
    async move {
        let Some(target) = target else {
            return Ok(text(
                StatusCode::NOT_FOUND,
                "only /api/* is forwarded\n".into(),
            ));
        };
        *req.uri_mut() = target;
        req.headers_mut().remove(hyper::header::HOST);
        match client.request(req).await {
            Ok(res) => Ok(res.map(BodyExt::boxed)),
            Err(e) => Ok(text(StatusCode::BAD_GATEWAY, format!("upstream: {e}\n"))),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *res.status_mut() = status;
    res
}
