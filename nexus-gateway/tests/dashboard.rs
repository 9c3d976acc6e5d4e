//! The `/dashboard` page in a real headless Chromium (`nexus_testkit::browser`)
//! against a real gateway on loopback with real upstreams, after real traffic.
//!
//! Sources of the cache and consumer panels:
//! - consumer: the real `nexus_consumer::admin` server (its `/stats` JSON),
//!   fed by setting its public counters;
//! - cache, in `real_cache_proxy_panel`: the real `nexus_cache` proxy with its
//!   admin server, in front of a real `redis-server`, after real GETs;
//! - cache, in `dashboard_shows_live_numbers_in_chromium`: a stand-in, an
//!   `HttpUpstream` (a real HTTP server over real TCP) serving JSON in the
//!   shape of nexus-cache's admin `/stats` plus unknown fields and a hostile
//!   key, which the page must tolerate and render as text.
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

#[allow(dead_code)]
#[path = "e2e/harness.rs"]
mod harness;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http::{Request, StatusCode};
use nexus_gateway::auth::sha256_hex;
use nexus_gateway::blocklist::StaticBlocklist;
use nexus_gateway::{Gateway, GatewayConfig};
use nexus_testkit::HttpUpstream;
use nexus_testkit::browser::Chromium;
use tokio::sync::oneshot;

use harness::{CLIENT_ID, CLIENT_SECRET, Reply, SECRET, send, services_json};

/// Bound on each whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// JSON in the shape of nexus-cache's admin `/stats` (see the module docs).
const CACHE_STATS: &str = r#"{
  "hit_ratio": 0.875, "hits": 7000, "misses": 1000, "collapsed": 40,
  "held_readers": 3,
  "hot_keys": [
    {"key": "product:1", "hits_per_second": 812.5},
    {"key": "<img src=x id=injected>", "hits_per_second": 12.0}
  ],
  "mechanisms": {"collapsed_calls": 40, "hot_keys": 2},
  "some_future_field": {"nested": {"deeper": 5}}, "a_string": "ignored"
}"#;

/// A gateway on a free loopback port; shut down and drained on `stop`.
struct Running {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(
        upstreams: &[String],
        extra_yaml: &str,
        blocklist: StaticBlocklist,
        events: nexus_events::Emitter,
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let services = dir.path().join("services.json");
        std::fs::write(&services, services_json(upstreams))?;
        // Rate limit per IP: 60 burst, 10/s, so the test's sequential burst
        // is limited (unless a request took over 100 ms) and the page's polls
        // (1/s) are not.
        let yaml = format!(
            "listen: 127.0.0.1:0\n\
             auth:\n  signing_secret: {SECRET}\n  clients:\n    - id: {CLIENT_ID}\n      secret_sha256: {}\n\
             rate_limit:\n  capacity: 60\n  refill_per_sec: 10\n\
             breaker:\n  volume_threshold: 2\n  reset_timeout_ms: 60000\n\
             proxy:\n  services_file: \"{}\"\n  retry_backoff_ms: 1\n  discovery_poll_ms: 100\n  timeout_ms: 2000\n\
             {extra_yaml}",
            sha256_hex(CLIENT_SECRET),
            services.display(),
        );
        let settings = GatewayConfig::from_yaml(&yaml)?.validate(|_| None)?;
        let gateway = Gateway::builder(settings)
            .blocklist(Arc::new(blocklist))
            .event_sink(Arc::new(events))
            .build()?;
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
            _dir: dir,
            stop: Some(tx),
            task,
        })
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Result<Reply> {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        send(self.addr, b.body(Bytes::new())?).await
    }

    async fn token(&self) -> Result<String> {
        let req = Request::post("/auth/token")
            .header("content-type", "application/json")
            .body(Bytes::from(format!(
                r#"{{"client_id":"{CLIENT_ID}","client_secret":"{CLIENT_SECRET}"}}"#
            )))?;
        let r = send(self.addr, req).await?;
        anyhow::ensure!(r.status == StatusCode::OK, "token: {}", r.status);
        Ok(r.json()["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned())
    }

    fn page_url(&self, token: &str) -> String {
        format!("http://{}/dashboard#token={token}", self.addr)
    }

    async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .context("drain timed out")??;
        Ok(())
    }
}

/// The opening tag of the element with `id` in a serialised DOM.
fn tag<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let at = dom.find(&format!(r#" id="{id}""#))?;
    let start = dom[..at].rfind('<')?;
    let end = at + dom[at..].find('>')?;
    Some(&dom[start..=end])
}

/// An attribute of the element with `id`.
fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let t = tag(dom, id)?;
    let from = t.find(&format!(r#" {name}=""#))? + name.len() + 3;
    let len = t[from..].find('"')?;
    Some(t[from..from + len].to_owned())
}

/// The text right after the opening tag of the element with `id`.
fn text(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!(r#" id="{id}""#))?;
    let from = at + dom[at..].find('>')? + 1;
    let len = dom[from..].find('<')?;
    Some(dom[from..from + len].to_owned())
}

/// The numeric `data-value` the page set on element `id`.
fn value(dom: &str, id: &str) -> Option<f64> {
    attr(dom, id, "data-value")?.parse().ok()
}

/// Checks a PNG is the expected size and shows something: many colours and
/// a sizeable share of pixels unlike the background.
fn assert_png_has_content(bytes: &[u8], width: u32, height: u32) -> Result<()> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let size = reader.output_buffer_size().context("PNG too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf)?;
    assert_eq!((info.width, info.height), (width, height));
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| &p[..3])
        .collect();
    let mut counts = std::collections::HashMap::<&[u8], usize>::new();
    for p in &pixels {
        *counts.entry(*p).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap_or(0);
    let other = pixels.len() - background;
    assert!(
        counts.len() >= 50,
        "only {} distinct colours: blank page?",
        counts.len()
    );
    assert!(
        other * 100 >= pixels.len() * 5,
        "only {other} of {} pixels differ from the background",
        pixels.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_live_numbers_in_chromium() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, dashboard_shows_live_numbers())
        .await
        .context("test bound")?
}

async fn dashboard_shows_live_numbers() -> Result<()> {
    let ok = HttpUpstream::start().await?;
    let failing = HttpUpstream::builder()
        .json(500, r#"{"error":"down"}"#)
        .start()
        .await?;
    let cache = HttpUpstream::builder()
        .json(200, CACHE_STATS)
        .start()
        .await?;
    // The real consumer admin server, with counters set as its service would.
    let consumer_stats = Arc::new(nexus_consumer::Stats::default());
    consumer_stats
        .records
        .store(7, std::sync::atomic::Ordering::Relaxed);
    consumer_stats
        .malformed
        .store(2, std::sync::atomic::Ordering::Relaxed);
    let consumer_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let consumer_addr = consumer_listener.local_addr()?;
    let (consumer_stop, consumer_stopped) = oneshot::channel::<()>();
    let consumer = tokio::spawn(nexus_consumer::admin::serve(
        consumer_listener,
        consumer_stats,
        async {
            let _ = consumer_stopped.await;
        },
    ));

    let blocklist = StaticBlocklist::default();
    blocklist.block("203.0.113.7".parse()?);
    blocklist.block("198.51.100.23".parse()?);
    let (emitter, _emitter_task, _sink) = nexus_events::Emitter::in_memory(4096)?;
    let gw = Running::start(
        &[ok.url(), failing.url()],
        &format!(
            "dashboard:\n  cache_admin: {}\n  consumer_admin: http://{consumer_addr}\n",
            cache.url()
        ),
        blocklist.clone(),
        emitter.clone(),
    )
    .await?;

    // The page itself is public, static and locked down.
    let page = gw.get("/dashboard", None).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'sha256-"),
        "{csp}"
    );
    // Its data is not.
    assert_eq!(
        gw.get("/admin/dashboard", None).await?.status,
        StatusCode::UNAUTHORIZED
    );

    // Traffic: proxied requests (the failing upstream's breaker opens), a
    // burst until the limiter rejects, and three requests from a blocked IP.
    let token = gw.token().await?;
    let mut generated: u64 = 1;
    let mut proxied_ok = 0;
    for _ in 0..20 {
        generated += 1;
        if gw.get("/api/products", Some(&token)).await?.status == StatusCode::OK {
            proxied_ok += 1;
        }
    }
    assert!(proxied_ok >= 18, "{proxied_ok} of 20 proxied requests ok");
    let mut limited = 0;
    while limited < 5 && generated < 400 {
        generated += 1;
        if gw.get("/health", None).await?.status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "the burst was never rate limited");
    let localhost: IpAddr = "127.0.0.1".parse()?;
    blocklist.block(localhost);
    for _ in 0..3 {
        generated += 1;
        assert_eq!(gw.get("/health", None).await?.status, StatusCode::FORBIDDEN);
    }
    blocklist.unblock(localhost);
    // Let the current second complete (the page shows complete seconds) and
    // the limiter refill for the page's polls.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The JSON the page polls.
    let doc = gw.get("/admin/dashboard", Some(&token)).await?;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json();
    assert_eq!(doc["cache"]["status"], "ok", "{doc}");
    assert_eq!(doc["cache"]["stats"]["hit_ratio"], 0.875);
    assert_eq!(doc["consumer"]["status"], "ok", "{doc}");
    assert_eq!(doc["consumer"]["stats"]["dropped"], 2, "{doc}");
    assert_eq!(doc["consumer"]["stats"]["records_total"], 7, "{doc}");
    let requests = &doc["gateway"]["requests"];
    assert!(requests["requests_total"].as_u64().unwrap() >= generated);
    assert!(requests["p99_ms"].as_f64().unwrap() > 0.0, "{requests}");
    assert_eq!(requests["blocked_total"], 3);
    assert!(requests["rate_limited_total"].as_u64().unwrap() >= 5);
    assert_eq!(
        doc["gateway"]["rate_limit"]["top_offenders"][0]["ip"],
        "127.0.0.1"
    );
    assert!(cache.requests() >= 1);
    assert!(
        cache
            .recorded_requests()
            .iter()
            .all(|r| r.method == http::Method::GET && r.uri.path() == "/stats")
    );

    // The page in a real browser.
    let chromium = Chromium::new()?
        .virtual_time_budget(Duration::from_secs(4))
        .window_size(1280, 1600);
    let dom = chromium.dump_dom(&gw.page_url(&token)).await?;
    let ctx = || format!("--- DOM ---\n{dom}");
    assert_eq!(
        attr(&dom, "status", "data-state").as_deref(),
        Some("ok"),
        "{}",
        ctx()
    );
    assert!(tag(&dom, "login").unwrap().contains("hidden"), "{}", ctx());
    // Requests: at least what this test sent, with latency quantiles.
    let total = value(&dom, "req-total").context("req-total")?;
    assert!(
        total >= generated as f64,
        "{total} < {generated}\n{}",
        ctx()
    );
    assert!(value(&dom, "p50").context("p50")? > 0.0, "{}", ctx());
    assert!(value(&dom, "p99").context("p99")? >= value(&dom, "p50").unwrap());
    assert!(
        value(&dom, "status-2xx").context("2xx")? >= 1.0,
        "{}",
        ctx()
    );
    assert!(dom.contains("<svg"), "charts missing\n{}", ctx());
    // Upstreams with health and breaker state.
    assert!(
        dom.contains(&format!(r#"data-url="{}" data-breaker="closed""#, ok.url())),
        "{}",
        ctx()
    );
    assert!(
        dom.contains(&format!(
            r#"data-url="{}" data-breaker="open""#,
            failing.url()
        )),
        "{}",
        ctx()
    );
    // Rate limit and blocklist.
    assert!(value(&dom, "rl-total").context("rl-total")? >= 5.0);
    assert_eq!(value(&dom, "bl-count"), Some(2.0), "{}", ctx());
    assert_eq!(value(&dom, "bl-total"), Some(3.0), "{}", ctx());
    assert!(dom.contains("<li>203.0.113.7</li>"), "{}", ctx());
    assert!(dom.contains("<td>127.0.0.1</td>"), "{}", ctx());
    // Gateway events through the emitter.
    assert!(value(&dom, "ev-emitted").context("ev-emitted")? >= 18.0);
    // Cache panel: special fields, generic table, hostile key as text.
    assert_eq!(
        attr(&dom, "cache-panel", "data-state").as_deref(),
        Some("ok")
    );
    assert_eq!(value(&dom, "cache-hit-ratio"), Some(0.875), "{}", ctx());
    assert_eq!(text(&dom, "cache-hit-ratio").as_deref(), Some("87.5 %"));
    assert_eq!(value(&dom, "cache-held"), Some(3.0));
    assert!(dom.contains("product:1"), "{}", ctx());
    assert!(dom.contains("&lt;img src=x id=injected&gt;"), "{}", ctx());
    assert!(
        !dom.contains(r#"id="injected""#),
        "markup injected\n{}",
        ctx()
    );
    assert!(dom.contains("some_future_field.nested.deeper"), "{}", ctx());
    // Consumer panel from the real consumer admin server.
    assert_eq!(
        attr(&dom, "consumer-panel", "data-state").as_deref(),
        Some("ok"),
        "{}",
        ctx()
    );
    assert_eq!(value(&dom, "consumer-dropped"), Some(2.0), "{}", ctx());
    assert_eq!(value(&dom, "consumer-total"), Some(0.0), "{}", ctx());
    assert!(dom.contains("records_total"), "{}", ctx());

    // A screenshot that is not blank.
    let dir = tempfile::tempdir()?;
    let shot = dir.path().join("dashboard.png");
    chromium.screenshot(&gw.page_url(&token), &shot).await?;
    assert_png_has_content(&std::fs::read(&shot)?, 1280, 1600)?;
    // To look at it: NEXUS_DASHBOARD_SCREENSHOT=/tmp/dashboard.png cargo test ...
    if let Some(keep) = std::env::var_os("NEXUS_DASHBOARD_SCREENSHOT") {
        std::fs::copy(&shot, keep)?;
    }

    gw.stop().await?;
    let _ = consumer_stop.send(());
    consumer.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_cache_admin_leaves_the_page_working() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, unreachable_cache_admin())
        .await
        .context("test bound")?
}

async fn unreachable_cache_admin() -> Result<()> {
    let up = HttpUpstream::start().await?;
    // A port nothing listens on.
    let dead = format!("http://127.0.0.1:{}", nexus_testkit::free_port()?);
    let (emitter, _task, _sink) = nexus_events::Emitter::in_memory(64)?;
    let gw = Running::start(
        &[up.url()],
        &format!("dashboard:\n  cache_admin: {dead}\n"),
        StaticBlocklist::default(),
        emitter,
    )
    .await?;
    let token = gw.token().await?;
    for _ in 0..5 {
        gw.get("/api/products", Some(&token)).await?;
    }

    let cache = gw.get("/admin/dashboard/cache", Some(&token)).await?;
    assert_eq!(cache.status, StatusCode::BAD_GATEWAY);
    let body = cache.json();
    assert_eq!(body["status"], "unreachable", "{body}");
    assert_eq!(body["url"], format!("{dead}/stats"));
    let consumer = gw.get("/admin/dashboard/consumer", Some(&token)).await?;
    assert_eq!(consumer.status, StatusCode::NOT_FOUND);
    assert_eq!(consumer.json()["status"], "not_configured");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let chromium = Chromium::new()?.virtual_time_budget(Duration::from_secs(3));
    let dom = chromium.dump_dom(&gw.page_url(&token)).await?;
    let ctx = || format!("--- DOM ---\n{dom}");
    assert_eq!(
        attr(&dom, "status", "data-state").as_deref(),
        Some("ok"),
        "{}",
        ctx()
    );
    assert_eq!(
        attr(&dom, "cache-panel", "data-state").as_deref(),
        Some("unreachable"),
        "{}",
        ctx()
    );
    let state = text(&dom, "cache-state").unwrap_or_default();
    assert!(state.starts_with("unreachable"), "{state}\n{}", ctx());
    assert_eq!(
        attr(&dom, "consumer-panel", "data-state").as_deref(),
        Some("not_configured")
    );
    assert!(
        text(&dom, "consumer-state")
            .unwrap_or_default()
            .contains("dashboard.consumer_admin"),
        "{}",
        ctx()
    );
    // The gateway's own panels still render.
    assert!(value(&dom, "req-total").context("req-total")? >= 6.0);
    assert!(
        dom.contains(&format!(r#"data-url="{}""#, up.url())),
        "{}",
        ctx()
    );
    gw.stop().await
}

#[tokio::test]
async fn silent_admin_server_times_out_quickly() -> Result<()> {
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let up = HttpUpstream::start().await?;
    let (emitter, _task, _sink) = nexus_events::Emitter::in_memory(64)?;
    let gw = Running::start(
        &[up.url()],
        &format!(
            "dashboard:\n  consumer_admin: http://{}\n",
            silent.local_addr()?
        ),
        StaticBlocklist::default(),
        emitter,
    )
    .await?;
    let token = gw.token().await?;
    let started = std::time::Instant::now();
    let r = gw.get("/admin/dashboard/consumer", Some(&token)).await?;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.json()["status"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The combined document still answers, with the gateway's own data.
    let doc = gw.get("/admin/dashboard", Some(&token)).await?;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.json()["consumer"]["status"], "timeout");
    assert_eq!(doc.json()["cache"]["status"], "not_configured");
    assert!(doc.json()["gateway"]["upstreams"][0]["url"] == up.url().as_str());
    gw.stop().await
}

/// A real nexus-cache proxy with its admin server on free ports, in front of
/// `redis`, with a policy that tracks hot `product:*` keys.
async fn cache_proxy(
    redis: &nexus_testkit::RedisServer,
) -> Result<(
    SocketAddr,
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = listener.local_addr()?;
    let policy = nexus_cache::policy::Policy::from_yaml_str(
        "rules:\n  - commands: [GET]\n    keys: 'product:*'\n    singleflight: true\n",
    )?;
    let config = nexus_cache::ProxyConfig::builder()
        .listen(proxy_addr)
        .upstream(redis.url())
        .policy(policy)
        .admin("127.0.0.1:0".parse()?)
        .build()?;
    let mut proxy = nexus_cache::Proxy::new(config);
    let admin = proxy.bind_admin().await?.context("admin configured")?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = proxy
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((proxy_addr, admin, stop, task))
}

/// Sends RESP `commands` pipelined on one connection and checks the replies
/// are exactly `expected`.
async fn resp_exchange(addr: SocketAddr, commands: &[&[&str]], expected: &[u8]) -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut out = Vec::new();
    for cmd in commands {
        out.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
        for arg in *cmd {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(&out).await?;
        let mut got = vec![0; expected.len()];
        s.read_exact(&mut got).await?;
        anyhow::Ok(got)
    };
    let got = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("RESP exchange timed out")??;
    anyhow::ensure!(
        got == expected,
        "replies: {:?}",
        String::from_utf8_lossy(&got)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cache_proxy_panel() -> Result<()> {
    tokio::time::timeout(TEST_TIMEOUT, real_cache_proxy())
        .await
        .context("test bound")?
}

async fn real_cache_proxy() -> Result<()> {
    let redis = nexus_testkit::RedisServer::start().await?;
    let (proxy, admin, stop_proxy, proxy_task) = cache_proxy(&redis).await?;
    // 30 hits on one hot key and 10 misses: hit ratio 0.75.
    let mut commands: Vec<&[&str]> = vec![&["SET", "product:1", "p1"]];
    let mut expected = b"+OK\r\n".to_vec();
    for _ in 0..30 {
        commands.push(&["GET", "product:1"]);
        expected.extend_from_slice(b"$2\r\np1\r\n");
    }
    for _ in 0..10 {
        commands.push(&["GET", "product:2"]);
        expected.extend_from_slice(b"$-1\r\n");
    }
    resp_exchange(proxy, &commands, &expected).await?;

    let up = HttpUpstream::start().await?;
    let (emitter, _task, _sink) = nexus_events::Emitter::in_memory(64)?;
    let gw = Running::start(
        &[up.url()],
        &format!("dashboard:\n  cache_admin: http://{admin}\n"),
        StaticBlocklist::default(),
        emitter,
    )
    .await?;
    let token = gw.token().await?;
    let panel = gw.get("/admin/dashboard/cache", Some(&token)).await?;
    assert_eq!(panel.status, StatusCode::OK);
    let stats = &panel.json()["stats"];
    assert_eq!(stats["hit_ratio"].as_f64(), Some(0.75), "{stats}");

    let dom = Chromium::new()?
        .virtual_time_budget(Duration::from_secs(3))
        .dump_dom(&gw.page_url(&token))
        .await?;
    let ctx = || format!("--- DOM ---\n{dom}");
    assert_eq!(
        attr(&dom, "cache-panel", "data-state").as_deref(),
        Some("ok"),
        "{}",
        ctx()
    );
    assert_eq!(value(&dom, "cache-hit-ratio"), Some(0.75), "{}", ctx());
    assert_eq!(value(&dom, "cache-held"), Some(0.0), "{}", ctx());
    assert!(
        dom.contains("<td class=\"key\">product:1</td>"),
        "{}",
        ctx()
    );
    assert!(dom.contains("get_hits"), "{}", ctx());

    gw.stop().await?;
    let _ = stop_proxy.send(());
    tokio::time::timeout(Duration::from_secs(15), proxy_task).await??;
    Ok(())
}

#[test]
fn dashboard_config_errors_name_the_field() {
    let strong = "auth:\n  signing_secret: 0123456789abcdef0123456789abcdef\n  clients: []\n";
    let check = |y: &str| {
        GatewayConfig::from_yaml(&format!("{strong}{y}"))
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate(|_| None).map_err(|e| e.to_string()))
    };
    let e = check("dashboard:\n  cache_admin: https://127.0.0.1:9380\n").unwrap_err();
    assert!(e.contains("dashboard.cache_admin"), "{e}");
    let e = check("dashboard:\n  consumer_admin: 127.0.0.1:9381\n").unwrap_err();
    assert!(e.contains("dashboard.consumer_admin"), "{e}");
    let e = check("dashboard:\n  cache_admn: http://127.0.0.1:9380\n").unwrap_err();
    assert!(e.contains("cache_admn"), "{e}");
    let s = check(
        "dashboard:\n  cache_admin: http://127.0.0.1:9380\n  consumer_admin: http://127.0.0.1:9381/\n",
    )
    .unwrap();
    assert_eq!(
        s.dashboard.consumer_admin.unwrap().stats_uri().to_string(),
        "http://127.0.0.1:9381/stats"
    );
    assert!(check("").unwrap().dashboard.cache_admin.is_none());
}
