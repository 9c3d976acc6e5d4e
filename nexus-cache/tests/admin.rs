//! The admin HTTP server (`/metrics`, `/stats`, `/healthz`), GET hit/miss
//! counting, `NEXUS.*` on pinned connections and sampled command spans,
//! against a real redis-server and over real TCP.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, ensure};
use common::{Conn, WAIT, cmd, show};
use nexus_cache::policy::Policy;
use nexus_cache::{Proxy, ProxyConfig, ProxyConfigBuilder};
use nexus_testkit::RedisServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A proxy with its admin server on a free port.
struct Admin {
    proxy: SocketAddr,
    admin: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Admin {
    async fn start(
        redis: &RedisServer,
        tune: impl FnOnce(ProxyConfigBuilder) -> ProxyConfigBuilder,
    ) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let proxy_addr = listener.local_addr()?;
        let builder = ProxyConfig::builder()
            .listen(proxy_addr)
            .upstream(redis.url())
            .admin("127.0.0.1:0".parse()?)
            .shutdown_grace(std::time::Duration::from_secs(2));
        let mut proxy = Proxy::new(tune(builder).build()?);
        let admin = proxy.bind_admin().await?.context("admin configured")?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            proxy
                .serve(listener, token.cancelled_owned())
                .await
                .unwrap();
        });
        Ok(Self {
            proxy: proxy_addr,
            admin,
            stop,
            task,
        })
    }

    async fn stop(self) -> Result<()> {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .context("proxy did not stop")??;
        // The admin server stopped with it.
        ensure!(
            TcpStream::connect(self.admin).await.is_err(),
            "admin still listening after shutdown"
        );
        Ok(())
    }
}

/// One HTTP/1.1 request; returns (status, content type, body).
async fn http(addr: SocketAddr, method: &str, path: &str) -> Result<(u16, String, String)> {
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr)).await??;
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await??;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split(' ')
        .nth(1)
        .context("no status")?
        .parse::<u16>()?;
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_owned()))
}

async fn stats(addr: SocketAddr) -> Result<Value> {
    let (status, ct, body) = http(addr, "GET", "/stats").await?;
    ensure!(
        status == 200 && ct.starts_with("application/json"),
        "{status} {ct}"
    );
    Ok(serde_json::from_str(&body)?)
}

/// The value of the sample line `name` (exact, labels included).
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_the_traffic_and_pass_promtool() -> Result<()> {
    let redis = RedisServer::start().await?;
    let admin = Admin::start(&redis, |b| b).await?;
    let mut c = Conn::connect(admin.proxy).await?;

    // One write: 5 SETs, an aggregate reply (LRANGE), 5 GETs of those
    // keys, 10 GETs of missing keys, 70 INCRs, and a GET past the 64th
    // command of its batch.
    let mut script = Vec::new();
    for i in 0..5 {
        let k = format!("k{i}");
        script.extend(cmd(&[b"SET", k.as_bytes(), b"v"]));
    }
    script.extend(cmd(&[b"RPUSH", b"agg", b"$-1", b"_", b"$1"]));
    script.extend(cmd(&[b"LRANGE", b"agg", b"0", b"-1"]));
    for i in 0..5 {
        script.extend(cmd(&[b"GET", format!("k{i}").as_bytes()]));
    }
    for i in 0..10 {
        script.extend(cmd(&[b"GET", format!("missing{i}").as_bytes()]));
    }
    for _ in 0..70 {
        script.extend(cmd(&[b"INCR", b"n"]));
    }
    script.extend(cmd(&[b"GET", b"k1"]));
    c.send(&script).await?;
    let replies = c.read_frames(93).await?;
    ensure!(replies.ends_with(b"$1\r\nv\r\n"), "{}", show(&replies));
    // A GET of a wrong type is neither a hit nor a miss.
    c.call(&[b"LPUSH", b"list", b"x"]).await?;
    ensure!(c.call(&[b"GET", b"list"]).await?.starts_with(b"-WRONGTYPE"));
    // Answered by the proxy itself.
    c.call(&[b"NEXUS.STATS"]).await?;

    let (status, ct, body) = http(admin.admin, "GET", "/metrics").await?;
    ensure!(status == 200, "{status}");
    ensure!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    nexus_testkit::promtool::check_metrics(&body).await?;
    let want = [
        ("nexus_cache_hits_total", 6.0),
        ("nexus_cache_misses_total", 10.0),
        ("nexus_cache_connected_clients", 1.0),
        ("nexus_cache_commands_total{class=\"forwarded\"}", 95.0),
        ("nexus_cache_commands_total{class=\"local\"}", 1.0),
        ("nexus_cache_commands_total{class=\"pinned\"}", 0.0),
        ("nexus_cache_collapsed_total", 0.0),
        ("nexus_cache_upstream_errors_total", 0.0),
        ("nexus_cache_upstream_error_replies_total", 1.0),
        // Mechanism counters, exported generically.
        ("nexus_cache_ttl_extensions_total", 0.0),
        ("nexus_cache_policy_reloads_failed_total", 0.0),
    ];
    for (name, value) in want {
        let got = sample(&body, name).with_context(|| format!("{name} missing:\n{body}"))?;
        ensure!(got == value, "{name} = {got}, want {value}");
    }
    // The batch round trips, in the seed's buckets.
    let count =
        sample(&body, "nexus_cache_upstream_request_duration_seconds_count").context("count")?;
    let inf = sample(
        &body,
        "nexus_cache_upstream_request_duration_seconds_bucket{le=\"+Inf\"}",
    )
    .context("+Inf")?;
    ensure!(count >= 2.0 && inf == count, "count {count}, +Inf {inf}");
    ensure!(
        body.contains("nexus_cache_upstream_request_duration_seconds_bucket{le=\"2\"}"),
        "{body}"
    );
    // No policy: no hot-key series.
    ensure!(!body.contains("nexus_cache_hot_key_hits_per_second{"));

    // HEAD works, other methods and paths do not.
    assert_eq!(http(admin.admin, "HEAD", "/metrics").await?.0, 200);
    // The same answers as the consumer's admin server.
    let (status, ct, body) = http(admin.admin, "POST", "/metrics").await?;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (405, "application/json", r#"{"error":"method not allowed"}"#)
    );
    let (status, ct, body) = http(admin.admin, "GET", "/nope").await?;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (404, "application/json", r#"{"error":"not found"}"#)
    );
    assert_eq!(http(admin.admin, "GET", "/metrics/x").await?.0, 404);
    let (status, ct, body) = http(admin.admin, "GET", "/healthz").await?;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (200, "application/json", r#"{"status":"ok"}"#)
    );
    admin.stop().await
}

/// The `nexus_cache_commands_total{class}` samples of one scrape.
async fn classes(admin: SocketAddr) -> Result<[f64; 3]> {
    let (_, _, body) = http(admin, "GET", "/metrics").await?;
    let get = |class: &str| {
        sample(
            &body,
            &format!("nexus_cache_commands_total{{class=\"{class}\"}}"),
        )
        .with_context(|| format!("{class} missing:\n{body}"))
    };
    Ok([get("forwarded")?, get("pinned")?, get("local")?])
}

#[tokio::test]
async fn command_classes_are_counted_where_routed_and_never_decrease() -> Result<()> {
    let redis = RedisServer::start().await?;
    let admin = Admin::start(&redis, |b| b.max_pinned(1)).await?;

    // One pinned client; a second pin is refused at max_pinned and is a
    // local command (answered by the proxy), not a pinned one.
    let mut pinned = Conn::connect(admin.proxy).await?;
    ensure!(pinned.call(&[b"MULTI"]).await? == b"+OK\r\n");
    let mut refused = Conn::connect(admin.proxy).await?;
    let reply = refused.call(&[b"MULTI"]).await?;
    ensure!(
        reply.starts_with(b"-ERR nexus: too many clients"),
        "{}",
        show(&reply)
    );
    ensure!(refused.call(&[b"GET", b"x"]).await? == b"$-1\r\n");
    assert_eq!(classes(admin.admin).await?, [1.0, 1.0, 1.0]);

    // Scrapes while a client pipelines forwarded and local commands: no
    // class ever goes down (a counter reset to Prometheus).
    let mut c = Conn::connect(admin.proxy).await?;
    let mut script = Vec::new();
    for _ in 0..50 {
        script.extend(cmd(&[b"GET", b"k"]));
        script.extend(cmd(&[b"NEXUS.STATS"]));
    }
    let load = tokio::spawn(async move {
        for _ in 0..40 {
            c.send(&script).await?;
            c.read_frames(100).await?;
        }
        anyhow::Ok(c)
    });
    let mut last = classes(admin.admin).await?;
    while !load.is_finished() {
        let now = classes(admin.admin).await?;
        for i in 0..3 {
            ensure!(
                now[i] >= last[i],
                "class {i} went down: {last:?} -> {now:?}"
            );
        }
        last = now;
    }
    let c = load.await??;
    let end = classes(admin.admin).await?;
    assert_eq!(end, [1.0 + 2000.0, 1.0, 1.0 + 2000.0]);
    drop((c, pinned, refused));
    admin.stop().await
}

#[tokio::test]
async fn stats_json_reports_hit_ratio_and_hot_keys() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = Policy::from_yaml_str(
        "rules:\n  - commands: [GET]\n    keys: 'product:*'\n    singleflight: true\n",
    )?;
    let admin = Admin::start(&redis, |b| b.policy(policy)).await?;

    let before = stats(admin.admin).await?;
    ensure!(before["hit_ratio"].is_null(), "{before}");
    ensure!(
        before["clients"] == 0 && before["commands_total"] == 0,
        "{before}"
    );

    let mut c = Conn::connect(admin.proxy).await?;
    c.call(&[b"SET", b"product:1", b"p1"]).await?;
    for _ in 0..30 {
        ensure!(c.call(&[b"GET", b"product:1"]).await? == b"$2\r\np1\r\n");
    }
    for _ in 0..10 {
        ensure!(c.call(&[b"GET", b"product:2"]).await? == b"$-1\r\n");
    }

    let s = stats(admin.admin).await?;
    assert_eq!(s["clients"], 1, "{s}");
    assert_eq!(s["commands_total"], 41, "{s}");
    assert_eq!(s["get_hits"], 30, "{s}");
    assert_eq!(s["get_misses"], 10, "{s}");
    assert_eq!(s["hit_ratio"].as_f64(), Some(0.75), "{s}");
    assert_eq!(s["collapsed"], 0, "{s}");
    assert_eq!(s["held_readers"], 0, "{s}");
    assert_eq!(s["held_readers_total"], 0, "{s}");
    ensure!(s["upstream_latency_p50_us"].as_u64().unwrap() > 0, "{s}");
    ensure!(
        s["upstream_latency_p99_us"].as_u64() >= s["upstream_latency_p50_us"].as_u64(),
        "{s}"
    );
    let hot = s["hot_keys"].as_array().context("hot_keys")?;
    assert_eq!(hot[0]["key"], "product:1", "{s}");
    ensure!(hot[0]["hits_per_second"].as_f64().unwrap() > 0.0, "{s}");
    // Every mechanism counter is listed, and the proxy counters.
    let mech = s["mechanisms"].as_object().context("mechanisms")?;
    for name in [
        "collapsed_calls",
        "hot_keys",
        "ttl_extensions",
        "policy_reloads_ok",
    ] {
        ensure!(mech.contains_key(name), "{name} missing in {s}");
    }
    assert_eq!(s["proxy"]["get_hits"], 30, "{s}");

    // The hottest key's rate is in /metrics at rank 1; the key itself never
    // is (client-controlled label values).
    let (_, _, body) = http(admin.admin, "GET", "/metrics").await?;
    let rate = sample(&body, "nexus_cache_hot_key_hits_per_second{rank=\"1\"}")
        .with_context(|| body.clone())?;
    ensure!(rate > 0.0);
    ensure!(
        !body.contains("product:"),
        "a key leaked into /metrics: {body}"
    );
    ensure!(!body.contains("rank=\"11\""), "more than 10 ranks: {body}");
    nexus_testkit::promtool::check_metrics(&body).await?;
    drop(c);
    admin.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_held_readers_is_the_number_held_now() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = Policy::from_yaml_str(
        "rules:\n  - commands: [GET]\n    keys: 's:*'\n    stampede: { lock_ttl: 5s, wait_timeout: 5s, max_waiters: 10 }\n",
    )?;
    let admin = Admin::start(&redis, |b| b.policy(policy)).await?;
    // The filler takes the lease; two readers are held behind it.
    let mut filler = Conn::connect(admin.proxy).await?;
    ensure!(filler.call(&[b"GET", b"s:1"]).await? == b"$-1\r\n");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = Conn::connect(admin.proxy).await?;
        c.send(&cmd(&[b"GET", b"s:1"])).await?;
        held.push(c);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    let s = loop {
        let s = stats(admin.admin).await?;
        if s["held_readers"] == 2 || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(s["held_readers"], 2, "{s}");
    assert_eq!(s["held_readers_total"], 0, "{s}");
    let (_, _, body) = http(admin.admin, "GET", "/metrics").await?;
    assert_eq!(sample(&body, "nexus_cache_held_now"), Some(2.0), "{body}");
    ensure!(body.contains("# TYPE nexus_cache_held_now gauge"), "{body}");
    ensure!(
        body.contains("# TYPE nexus_cache_held_readers_total counter"),
        "{body}"
    );

    ensure!(filler.call(&[b"SET", b"s:1", b"v"]).await? == b"+OK\r\n");
    for c in &mut held {
        ensure!(c.read_frames(1).await? == b"$1\r\nv\r\n");
    }
    let s = stats(admin.admin).await?;
    assert_eq!(s["held_readers"], 0, "{s}");
    assert_eq!(s["held_readers_total"], 2, "{s}");
    drop((filler, held));
    admin.stop().await
}

#[tokio::test]
async fn admin_is_off_by_default() -> Result<()> {
    let config = ProxyConfig::builder().build()?;
    assert_eq!(config.admin, None);
    assert_eq!(config.trace_sample, None);
    let mut proxy = Proxy::new(config);
    assert_eq!(proxy.bind_admin().await?, None);
    // A taken address is a clear bind error naming it.
    let taken = TcpListener::bind("127.0.0.1:0").await?;
    let addr = taken.local_addr()?;
    let mut proxy = Proxy::new(ProxyConfig::builder().admin(addr).build()?);
    let err = proxy.bind_admin().await.unwrap_err().to_string();
    ensure!(err.contains(&addr.to_string()), "{err}");
    // `serve` binds it itself and fails the same way, before serving anyone.
    let proxy = Proxy::new(ProxyConfig::builder().admin(addr).build()?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let served = tokio::time::timeout(WAIT, proxy.serve(listener, std::future::pending())).await?;
    let err = served.unwrap_err().to_string();
    ensure!(err.contains(&addr.to_string()), "{err}");
    Ok(())
}

#[tokio::test]
async fn nexus_commands_answer_on_pinned_connections() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = Policy::from_yaml_str("rules:\n  - commands: [GET]\n    keys: 'p:*'\n")?;
    let admin = Admin::start(&redis, |b| b.policy(policy)).await?;
    let mut c = Conn::connect(admin.proxy).await?;
    c.call(&[b"SET", b"a", b"1"]).await?;
    // SELECT 1 pins the client to its own connection.
    assert_eq!(c.call(&[b"SELECT", b"1"]).await?, b"+OK\r\n");
    let stats = String::from_utf8(c.call(&[b"NEXUS.STATS"]).await?)?;
    ensure!(stats.starts_with('*'), "{stats}");
    ensure!(stats.contains("$8\r\ncommands\r\n:3\r\n"), "{stats}");
    ensure!(stats.contains("$14\r\npinned_clients\r\n:1\r\n"), "{stats}");
    assert_eq!(c.call(&[b"NEXUS.HOTKEYS"]).await?, b"*0\r\n");
    let err = String::from_utf8(c.call(&[b"NEXUS.TAG", b"t", b"a"]).await?)?;
    ensure!(
        err.starts_with("-ERR nexus: 'nexus.tag' is not available on a pinned"),
        "{err}"
    );
    let err = String::from_utf8(c.call(&[b"NEXUS.NOPE"]).await?)?;
    ensure!(
        err.starts_with("-ERR nexus: unknown admin command"),
        "{err}"
    );
    // In a transaction the answer comes with EXEC, in order.
    c.send(
        &[
            cmd(&[b"MULTI"]),
            cmd(&[b"NEXUS.STATS"]),
            cmd(&[b"GET", b"a"]),
            cmd(&[b"EXEC"]),
        ]
        .concat(),
    )
    .await?;
    let tx = String::from_utf8(c.read_frames(4).await?)?;
    ensure!(
        tx.starts_with("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n*"),
        "{tx}"
    );
    // Database 1 is selected: `a` lives in database 0.
    ensure!(tx.ends_with("$-1\r\n"), "{tx}");
    // RESP3 on the pinned connection: the same answer, as a RESP3 array.
    c.call(&[b"HELLO", b"3"]).await?;
    let stats = String::from_utf8(c.call(&[b"NEXUS.STATS"]).await?)?;
    ensure!(
        stats.starts_with('*') && stats.contains("pinned_commands"),
        "{stats}"
    );

    let s = self::stats(admin.admin).await?;
    assert_eq!(s["proxy"]["pinned_commands"], 11, "{s}");
    drop(c);
    admin.stop().await
}

/// The type bytes of every line of a RESP reply that starts a value (after
/// skipping bulk payloads).
fn resp_types(reply: &[u8]) -> Result<Vec<u8>> {
    let mut types = Vec::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("unterminated line")?;
        let (line, after) = (&rest[..end], &rest[end + 2..]);
        types.push(line[0]);
        rest = after;
        if line[0] == b'$' {
            let n: usize = std::str::from_utf8(&line[1..])?.parse()?;
            rest = &rest[n + 2..];
        }
    }
    Ok(types)
}

#[tokio::test]
async fn nexus_echo_on_pinned_connections_resp3_subscribe_and_reply_skip() -> Result<()> {
    let redis = RedisServer::start().await?;
    let policy = Policy::from_yaml_str("rules:\n  - commands: [GET]\n    keys: 'p:*'\n")?;
    let admin = Admin::start(&redis, |b| b.policy(policy)).await?;

    // RESP3: the same reply types as in RESP2 (array, bulk strings,
    // integers), never a boolean or a null standing for something else.
    let mut c = Conn::connect(admin.proxy).await?;
    for _ in 0..5 {
        c.call(&[b"GET", b"p:hot"]).await?;
    }
    let hello = c.call(&[b"HELLO", b"3"]).await?;
    ensure!(hello.starts_with(b"%"), "{}", show(&hello));
    let stats = c.call(&[b"NEXUS.STATS"]).await?;
    let types = resp_types(&stats)?;
    ensure!(types[0] == b'*', "{}", show(&stats));
    ensure!(
        types[1..].iter().all(|t| *t == b'$' || *t == b':'),
        "{}",
        show(&stats)
    );
    let hot = c.call(&[b"NEXUS.HOTKEYS"]).await?;
    ensure!(
        hot.starts_with(b"*1\r\n*2\r\n$5\r\np:hot\r\n$"),
        "{}",
        show(&hot)
    );
    ensure!(
        resp_types(&hot)?.iter().all(|t| matches!(t, b'*' | b'$')),
        "{}",
        show(&hot)
    );
    let err = c.call(&[b"NEXUS.NOPE"]).await?;
    ensure!(
        err.starts_with(b"-ERR nexus: unknown admin command"),
        "{}",
        show(&err)
    );

    // CLIENT REPLY SKIP is respected: no reply to the next command, here a
    // NEXUS one, and the next reply is the PING's.
    let mut c = Conn::connect(admin.proxy).await?;
    c.send(
        &[
            cmd(&[b"CLIENT", b"REPLY", b"SKIP"]),
            cmd(&[b"NEXUS.STATS"]),
            cmd(&[b"PING"]),
        ]
        .concat(),
    )
    .await?;
    ensure!(c.read_frames(1).await? == b"+PONG\r\n");
    ensure!(
        c.call(&[b"NEXUS.HOTKEYS", b"1"])
            .await?
            .starts_with(b"*1\r\n")
    );

    // RESP2 subscribe mode: Redis refuses the EVAL the answer rides on, with
    // an error naming it (documented); the subscription goes on.
    let mut c = Conn::connect(admin.proxy).await?;
    let sub = c.call(&[b"SUBSCRIBE", b"ch"]).await?;
    ensure!(
        sub.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"),
        "{}",
        show(&sub)
    );
    let err = String::from_utf8(c.call(&[b"NEXUS.STATS"]).await?)?;
    ensure!(
        err.starts_with("-ERR")
            && err.to_ascii_lowercase().contains("eval")
            && err.contains("allowed in this context"),
        "{err}"
    );
    let pong = c.call(&[b"PING"]).await?;
    ensure!(pong.starts_with(b"*2\r\n$4\r\npong\r\n"), "{}", show(&pong));
    drop(c);
    admin.stop().await
}

/// Spans seen by a test subscriber: (name, otel.name, is root), and closes;
/// how long each `cache.command` span lived (otel.name, open to close), and
/// the otel.name of `cache.command` events.
#[derive(Default)]
struct Seen {
    opened: Vec<(String, String, bool)>,
    closed: usize,
    open_at: std::collections::HashMap<u64, (String, std::time::Instant)>,
    lived: Vec<(String, std::time::Duration)>,
    events: Vec<String>,
}

struct Capture(Arc<Mutex<Seen>>);

struct OtelName(String);

impl tracing::field::Visit for OtelName {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "otel.name" {
            value.clone_into(&mut self.0);
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

impl<S> tracing_subscriber::Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut name = OtelName(String::new());
        attrs.record(&mut name);
        let root = attrs.is_root();
        let mut seen = self.0.lock().unwrap();
        if attrs.metadata().name() == "cache.command" {
            seen.open_at
                .insert(id.into_u64(), (name.0.clone(), std::time::Instant::now()));
        }
        seen.opened
            .push((attrs.metadata().name().to_owned(), name.0, root));
    }

    fn on_close(&self, id: tracing::span::Id, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut seen = self.0.lock().unwrap();
        seen.closed += 1;
        if let Some((name, at)) = seen.open_at.remove(&id.into_u64()) {
            seen.lived.push((name, at.elapsed()));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "nexus_cache::command" {
            let mut name = OtelName(String::new());
            event.record(&mut name);
            self.0.lock().unwrap().events.push(name.0);
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn one_command_in_n_gets_a_root_span() -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
    // current_thread runtime: the proxy's tasks run on this thread too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let redis = RedisServer::start().await?;
    let admin = Admin::start(&redis, |b| b.trace_sample(10)).await?;
    let mut c = Conn::connect(admin.proxy).await?;
    // 100 commands in one pipeline (one batch), then 10 one by one.
    let mut script = Vec::new();
    for _ in 0..100 {
        script.extend(cmd(&[b"GET", b"x"]));
    }
    c.send(&script).await?;
    c.read_frames(100).await?;
    for _ in 0..10 {
        c.call(&[b"PING"]).await?;
    }
    drop(c);
    admin.stop().await?;

    let seen = seen.lock().unwrap();
    let commands: Vec<_> = seen
        .opened
        .iter()
        .filter(|(name, _, _)| name == "cache.command")
        .collect();
    // The first command of a connection starts the countdown at 1.
    assert_eq!(commands.len(), 11, "{:?}", seen.opened);
    ensure!(commands.iter().all(|(_, _, root)| *root));
    let reads = commands.iter().filter(|(_, c, _)| c == "read").count();
    let server = commands.iter().filter(|(_, c, _)| c == "server").count();
    assert_eq!((reads, server), (10, 1), "{commands:?}");
    ensure!(seen.closed >= commands.len());
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn no_spans_when_sampling_is_off() -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
    let _guard = tracing::subscriber::set_default(subscriber);
    let redis = RedisServer::start().await?;
    let admin = Admin::start(&redis, |b| b).await?;
    let mut c = Conn::connect(admin.proxy).await?;
    for _ in 0..50 {
        c.call(&[b"GET", b"x"]).await?;
    }
    drop(c);
    admin.stop().await?;
    let seen = seen.lock().unwrap();
    ensure!(
        !seen.opened.iter().any(|(n, _, _)| n == "cache.command"),
        "{:?}",
        seen.opened
    );
    Ok(())
}

/// A Lua script that keeps Redis busy for about `ms` milliseconds.
fn busy(ms: u32) -> Vec<u8> {
    let script = format!(
        "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] \
         repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s >= {}",
        ms * 1000
    );
    cmd(&[b"EVAL", script.as_bytes(), b"0"])
}

#[tokio::test(flavor = "current_thread")]
async fn every_sampled_span_lasts_until_its_reply_is_written() -> Result<()> {
    use tracing_subscriber::layer::SubscriberExt as _;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
    let _guard = tracing::subscriber::set_default(subscriber);

    let redis = RedisServer::start().await?;
    // Every command sampled.
    let admin = Admin::start(&redis, |b| b.trace_sample(1)).await?;
    let mut c = Conn::connect(admin.proxy).await?;
    // One batch: GET, a 30 ms script, GET; then a local command queued
    // behind that batch's reply.
    let script = [
        cmd(&[b"GET", b"a"]),
        busy(30),
        cmd(&[b"GET", b"b"]),
        cmd(&[b"NEXUS.STATS"]),
    ]
    .concat();
    c.send(&script).await?;
    let replies = c.read_frames(4).await?;
    ensure!(
        replies.starts_with(b"$-1\r\n$-1\r\n$-1\r\n*"),
        "{}",
        show(&replies)
    );
    // 20 commands in one pipeline: more sampled commands than one batch
    // carries spans for; none loses its span.
    let mut many = Vec::new();
    for _ in 0..20 {
        many.extend(cmd(&[b"GET", b"x"]));
    }
    c.send(&many).await?;
    c.read_frames(20).await?;
    // Pinned commands get an event, not a span.
    ensure!(c.call(&[b"SELECT", b"1"]).await? == b"+OK\r\n");
    ensure!(c.call(&[b"GET", b"a"]).await? == b"$-1\r\n");
    drop(c);
    admin.stop().await?;

    let seen = seen.lock().unwrap();
    let lived = &seen.lived;
    // GET, EVAL, GET, NEXUS.STATS, 20 GETs; every span closed.
    assert_eq!(lived.len(), 24, "{lived:?}");
    ensure!(seen.open_at.is_empty(), "spans never closed");
    // The whole first batch (and the local reply behind it) waited for the
    // script: no span of it ends before its reply exists.
    for (name, d) in &lived[..4] {
        ensure!(
            *d >= std::time::Duration::from_millis(25),
            "{name} span lived {d:?}: {lived:?}"
        );
    }
    assert_eq!(lived[3].0, "local");
    ensure!(lived.iter().all(|(_, d)| !d.is_zero()), "{lived:?}");
    ensure!(
        !seen.opened.iter().any(|(_, c, _)| c == "pinned"),
        "a pinned span: {:?}",
        seen.opened
    );
    assert_eq!(seen.events, ["pinned", "pinned"], "{:?}", seen.events);
    Ok(())
}
