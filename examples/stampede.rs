//! The stampede benchmark: many clients read one hot key the moment it
//! expires, against Redis directly, through one Nexus proxy and through two.
//!
//! ```text
//! cargo run --release --example stampede -- [--clients 2000] [--db-ms 50] \
//!     [--redis redis://127.0.0.1:6379] [--mode all|stampede|early] \
//!     [--readers 50] [--ttl-ms 3000]
//! ```
//!
//! Without `--redis`, a redis-server is started on a free loopback port
//! (nexus-testkit; `redis-server` must be on PATH). The proxies run in this
//! process, in front of that Redis, with a policy guarding `hot:*` (the
//! policy text is printed). Each client has its own TCP connection; this
//! needs about `3 x clients` file descriptors (checked against `ulimit -n`
//! at start).
//!
//! **stampede**: the key is written with a short TTL; when it expires every
//! client sends one `GET`. A client that gets nil does what an application
//! does: one "database call" (a `--db-ms` sleep, counted) and a `SET` of the
//! key. Printed per target: database calls and the read latency (p50, p99,
//! max) of the `GET`s.
//!
//! **early**: `--readers` clients read the key continuously from when it is
//! written with `--ttl-ms` until five database calls past its expiry (one
//! expiry; a refreshed key lives another TTL, so a second refresh would
//! belong to the next expiry). A nil is answered the same way (counted,
//! database call, `SET ... PX ttl`). XFetch refreshes about
//! `refill x ln(reads per second x refill)` before expiry (per-read
//! probability), so a TTL of only a few refill times is refreshed several
//! times per TTL under a heavy read rate; the default 3 s TTL with a 50 ms
//! database call keeps one refresh per expiry.
//! Compared: a key that never expires (baseline), the key expiring directly
//! on Redis, through the proxy with the guard only, and with the guard and
//! early refresh (XFetch). Printed: clients that got nil, and p50/p99/max.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nexus_cache::policy::Policy;
use nexus_cache::{MechanismMetrics, Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Barrier, oneshot};

type Error = Box<dyn std::error::Error + Send + Sync>;

const KEY: &str = "hot:product:1";
const VALUE: &str = "{\"id\":1,\"name\":\"hot product\",\"price\":42}";
const USAGE: &str = "usage: stampede [--clients N] [--db-ms MS] [--redis redis://host:port] \
[--mode all|stampede|early] [--readers N] [--ttl-ms MS]";

struct Args {
    clients: usize,
    db: Duration,
    redis: Option<String>,
    mode: String,
    readers: usize,
    ttl: Duration,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        clients: 2000,
        db: Duration::from_millis(50),
        redis: None,
        mode: "all".into(),
        readers: 50,
        ttl: Duration::from_millis(3000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
        };
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--clients" => a.clients = num(value()?)?.max(1) as usize,
            "--db-ms" => a.db = Duration::from_millis(num(value()?)?),
            "--redis" => a.redis = Some(value()?),
            "--mode" => a.mode = value()?,
            "--readers" => a.readers = num(value()?)?.max(1) as usize,
            "--ttl-ms" => a.ttl = Duration::from_millis(num(value()?)?.max(100)),
            _ => return Err(USAGE.to_owned()),
        }
    }
    if !["all", "stampede", "early"].contains(&a.mode.as_str()) {
        return Err(USAGE.to_owned());
    }
    Ok(a)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args = args().map_err(|e| -> Error { e.into() })?;
    check_fd_limit(3 * args.clients.max(args.readers) + 256)?;
    // Keep the server alive for the whole run (stopped on drop).
    let (_server, redis_addr, redis_url) = match &args.redis {
        Some(url) => (None, addr_of(url)?, url.clone()),
        None => {
            let s = nexus_testkit::RedisServer::start().await?;
            let (addr, url) = (s.addr(), s.url());
            (Some(s), addr, url)
        }
    };
    println!("redis: {redis_url}; other processes may share the cores");
    if args.mode != "early" {
        stampede_mode(&args, redis_addr, &redis_url).await?;
    }
    if args.mode != "stampede" {
        early_mode(&args, redis_addr, &redis_url).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- stampede

async fn stampede_mode(args: &Args, redis: SocketAddr, url: &str) -> Result<(), Error> {
    let yaml = "rules:\n  - commands: [GET]\n    keys: 'hot:*'\n    stampede: { lock_ttl: 2s, wait_timeout: 2s, max_waiters: 10000 }\n";
    println!(
        "\n== stampede: {} clients, database call {:?}",
        args.clients, args.db
    );
    println!("policy:\n{yaml}");
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "target", "db calls", "p50 ms", "p99 ms", "max ms", "held"
    );
    let policy = Policy::from_yaml_str(yaml)?;
    let direct = run_stampede(args, redis, &[redis]).await?;
    print_row("redis", &direct, None);
    let one = Proxies::start(url, &policy, 1).await?;
    let r = run_stampede(args, redis, &one.addrs).await?;
    print_row("1 proxy", &r, Some(&one));
    one.stop().await;
    let two = Proxies::start(url, &policy, 2).await?;
    let r = run_stampede(args, redis, &two.addrs).await?;
    print_row("2 proxies", &r, Some(&two));
    two.stop().await;
    println!(
        "(hold bound: wait_timeout 2s + one round trip; the filler's database call is {:?})",
        args.db
    );
    Ok(())
}

struct Run {
    db_calls: u64,
    latencies: Vec<Duration>,
}

/// Connects every client, lets the key expire, then all `GET` it at once.
async fn run_stampede(
    args: &Args,
    redis: SocketAddr,
    targets: &[SocketAddr],
) -> Result<Run, Error> {
    let mut admin = Resp::connect(redis).await?;
    admin.call(&["DEL", KEY]).await?;
    let mut conns = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut c = Resp::connect(targets[i % targets.len()]).await?;
        c.call(&["PING"]).await?;
        conns.push(c);
    }
    let ttl = 300u64;
    admin
        .call(&["SET", KEY, VALUE, "PX", &ttl.to_string()])
        .await?;
    let expiry = Instant::now() + Duration::from_millis(ttl);
    let db_calls = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(args.clients));
    let mut tasks = Vec::with_capacity(args.clients);
    for mut c in conns {
        let (db_calls, barrier, db) = (Arc::clone(&db_calls), Arc::clone(&barrier), args.db);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(
                expiry + Duration::from_millis(2),
            ))
            .await;
            barrier.wait().await;
            let t = Instant::now();
            let got = c.call(&["GET", KEY]).await?;
            let latency = t.elapsed();
            if got == Reply::Nil {
                db_calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(db).await;
                c.call(&["SET", KEY, VALUE, "EX", "60"]).await?;
            }
            Ok::<_, Error>(latency)
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await??);
    }
    Ok(Run {
        db_calls: db_calls.load(Ordering::Relaxed),
        latencies,
    })
}

fn print_row(target: &str, r: &Run, proxies: Option<&Proxies>) {
    let (p50, p99, max) = percentiles(&r.latencies);
    let held = proxies.map_or("-".to_owned(), |p| {
        let s = p.sum(|m| m.held_filled.load(Ordering::Relaxed));
        let t = p.sum(|m| m.held_timed_out.load(Ordering::Relaxed));
        format!("{s}+{t}to")
    });
    println!(
        "{target:<12} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9}",
        r.db_calls, p50, p99, max, held
    );
}

// ------------------------------------------------------------------- early

async fn early_mode(args: &Args, redis: SocketAddr, url: &str) -> Result<(), Error> {
    let guard = "rules:\n  - commands: [GET]\n    keys: 'hot:*'\n    stampede: { lock_ttl: 2s, wait_timeout: 2s, max_waiters: 10000 }\n";
    let early = "rules:\n  - commands: [GET]\n    keys: 'hot:*'\n    stampede: { lock_ttl: 2s, wait_timeout: 2s, max_waiters: 10000, early_refresh: 1.0 }\n";
    println!(
        "\n== early refresh: {} readers read continuously for {:?} across one expiry (TTL {:?}), database call {:?}",
        args.readers,
        window(args),
        args.ttl,
        args.db
    );
    println!("policy (guard + early refresh):\n{early}");
    println!(
        "{:<26} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "target", "nils", "reads", "p50 ms", "p99 ms", "max ms"
    );
    let base = run_early(args, redis, &[redis], false).await?;
    print_early("redis, no expiry", &base);
    let r = run_early(args, redis, &[redis], true).await?;
    print_early("redis, expiring", &r);
    for (name, yaml) in [("proxy, guard", guard), ("proxy, guard + early", early)] {
        let proxies = Proxies::start(url, &Policy::from_yaml_str(yaml)?, 1).await?;
        let base = run_early(args, redis, &proxies.addrs, false).await?;
        print_early(&format!("{name}, no expiry"), &base);
        let r = run_early(args, redis, &proxies.addrs, true).await?;
        print_early(&format!("{name}, expiring"), &r);
        let (_, b99, _) = percentiles(&base.latencies);
        let (_, p99, _) = percentiles(&r.latencies);
        println!(
            "{:<26} p99 ratio expiring/no-expiry {:.2}; early refreshes {}, held readers {}",
            "",
            p99 / b99.max(1e-9),
            proxies.sum(|m| m.early_refreshes.load(Ordering::Relaxed)),
            proxies.sum(|m| m.held_readers.load(Ordering::Relaxed)),
        );
        proxies.stop().await;
    }
    Ok(())
}

struct EarlyRun {
    nils: u64,
    latencies: Vec<Duration>,
}

/// How long the early-refresh readers read: the TTL plus five database calls.
fn window(args: &Args) -> Duration {
    args.ttl + args.db * 5
}

/// Readers read the key for [`window`]; with `expiring`, the key is written
/// with the TTL right before (after one warm-up miss and fill, so the proxy
/// has measured a refill time), otherwise without one.
async fn run_early(
    args: &Args,
    redis: SocketAddr,
    targets: &[SocketAddr],
    expiring: bool,
) -> Result<EarlyRun, Error> {
    let ttl_ms = args.ttl.as_millis().to_string();
    let mut admin = Resp::connect(redis).await?;
    admin.call(&["DEL", KEY]).await?;
    // Warm-up miss and fill through the first target (measures the refill).
    let mut warm = Resp::connect(targets[0]).await?;
    if warm.call(&["GET", KEY]).await? == Reply::Nil {
        tokio::time::sleep(args.db).await;
        warm.call(&["SET", KEY, VALUE, "PX", &ttl_ms]).await?;
    }
    if expiring {
        admin.call(&["SET", KEY, VALUE, "PX", &ttl_ms]).await?;
    } else {
        admin.call(&["SET", KEY, VALUE]).await?;
    }
    let deadline = Instant::now() + window(args);
    let nils = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..args.readers {
        let mut c = Resp::connect(targets[i % targets.len()]).await?;
        let (nils, db, ttl_ms) = (Arc::clone(&nils), args.db, ttl_ms.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let got = c.call(&["GET", KEY]).await?;
                lat.push(t.elapsed());
                if got == Reply::Nil {
                    nils.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(db).await;
                    c.call(&["SET", KEY, VALUE, "PX", &ttl_ms]).await?;
                }
            }
            Ok::<_, Error>(lat)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(EarlyRun {
        nils: nils.load(Ordering::Relaxed),
        latencies,
    })
}

fn print_early(target: &str, r: &EarlyRun) {
    let (p50, p99, max) = percentiles(&r.latencies);
    println!(
        "{target:<26} {:>8} {:>9} {:>9.3} {:>9.3} {:>9.2}",
        r.nils,
        r.latencies.len(),
        p50,
        p99,
        max
    );
}

// ----------------------------------------------------------------- support

/// Proxies started in this process in front of one Redis.
struct Proxies {
    addrs: Vec<SocketAddr>,
    metrics: Vec<Arc<MechanismMetrics>>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxies {
    async fn start(url: &str, policy: &Policy, n: usize) -> Result<Self, Error> {
        let mut p = Self {
            addrs: Vec::new(),
            metrics: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
        };
        for _ in 0..n {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let config = ProxyConfig::builder()
                .listen(listener.local_addr()?)
                .upstream(url)
                .policy(policy.clone())
                .build()?;
            let proxy = Proxy::new(config);
            p.addrs.push(listener.local_addr()?);
            p.metrics.push(proxy.mechanism_metrics());
            let (tx, rx) = oneshot::channel();
            p.stops.push(tx);
            p.tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = rx.await;
                };
                if let Err(e) = proxy.serve(listener, stop).await {
                    eprintln!("proxy failed: {e}");
                }
            }));
        }
        Ok(p)
    }

    fn sum(&self, f: impl Fn(&MechanismMetrics) -> u64) -> u64 {
        self.metrics.iter().map(|m| f(m)).sum()
    }

    async fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// p50, p99 and max in milliseconds.
fn percentiles(l: &[Duration]) -> (f64, f64, f64) {
    if l.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v: Vec<f64> = l.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.50), at(0.99), v[v.len() - 1])
}

/// `host:port` of a `redis://host:port[/db]` URL (no credentials).
fn addr_of(url: &str) -> Result<SocketAddr, Error> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or("--redis must be redis://host:port")?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    if hostport.contains('@') {
        return Err("--redis: credentials are not supported by this benchmark".into());
    }
    let hostport = hostport.replace("localhost", "127.0.0.1");
    Ok(hostport.parse()?)
}

/// Fails clearly when `ulimit -n` cannot hold the connections.
fn check_fd_limit(needed: usize) -> Result<(), Error> {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return Ok(());
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    match soft {
        Some(s) if s < needed => Err(format!(
            "ulimit -n is {s}, this run needs about {needed} file descriptors: run `ulimit -n {needed}` first or lower --clients"
        )
        .into()),
        _ => Ok(()),
    }
}

/// The replies this benchmark needs to tell apart.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Nil,
    Other,
}

/// A minimal RESP2 client: one command, one reply.
struct Resp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Resp {
    async fn connect(addr: SocketAddr) -> Result<Self, Error> {
        let stream =
            tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(256),
        })
    }

    async fn call(&mut self, args: &[&str]) -> Result<Reply, Error> {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(req.as_bytes()).await?;
        self.buf.clear();
        tokio::time::timeout(Duration::from_secs(30), self.read_reply()).await?
    }

    async fn read_reply(&mut self) -> Result<Reply, Error> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = &self.buf[..end];
                match line.first() {
                    Some(b'$') => {
                        let n: i64 = std::str::from_utf8(&line[1..])?.parse()?;
                        if n < 0 {
                            return Ok(Reply::Nil);
                        }
                        if self.buf.len() >= end + 2 + n as usize + 2 {
                            return Ok(Reply::Other);
                        }
                    }
                    Some(b'-') => {
                        return Err(
                            format!("error reply: {}", String::from_utf8_lossy(line)).into()
                        );
                    }
                    _ => return Ok(Reply::Other),
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
