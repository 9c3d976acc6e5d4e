//! Runs every command of `docs/tour.md` verbatim (ports substituted) in one
//! `bash` session against the `full_stack` logic, started in process on free
//! ports with its own `redis-server` (nexus-testkit), and checks each output.
//!
//! The stack is the example's own code (`examples/support/stack.rs`, included
//! with `#[path]`), so what is tested is what `cargo run --example full_stack`
//! runs, minus argument parsing and the signal wait.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[path = "../examples/support/mock_upstream_app.rs"]
mod mock_upstream_app;
#[path = "../examples/support/stack.rs"]
mod stack;

/// Bound on one tour command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The tour's shell blocks, in order: (name, commands).
fn tour_blocks() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tour.md"))
        .expect("docs/tour.md");
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .trim()
            .strip_prefix("<!-- tour:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert_eq!(
            fence.trim(),
            "```sh",
            "tour:{name} must be followed by a ```sh block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        blocks.push((name.trim().to_owned(), body.join("\n")));
    }
    blocks
}

/// A `bash` session fed the tour's blocks one at a time (state such as
/// `$TOKEN` carries over, like a user's terminal).
struct Shell {
    /// Owned so that the session is killed when the test ends (`kill_on_drop`).
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    fn start() -> Self {
        let mut child = Command::new("bash")
            .args(["--noprofile", "--norc", "-s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("bash");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    /// Runs `commands`, returns (stdout+stderr, status of the last command).
    async fn run(&mut self, n: usize, commands: &str) -> (String, i32) {
        let marker = format!("__tour_done_{n}__");
        let script = format!("{{\n{commands}\n}} 2>&1\necho \"{marker}$?\"\n");
        self.stdin.write_all(script.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
        let mut out = String::new();
        let read = async {
            loop {
                let mut line = String::new();
                let n = self.stdout.read_line(&mut line).await.unwrap();
                assert!(n > 0, "bash exited; output so far:\n{out}");
                // Output without a final newline (curl's) shares the marker's line.
                if let Some(at) = line.find(&marker) {
                    out.push_str(&line[..at]);
                    return line[at + marker.len()..].trim_end().parse::<i32>().unwrap();
                }
                out.push_str(&line);
            }
        };
        let status = tokio::time::timeout(COMMAND_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("tour command timed out:\n{commands}"));
        (out, status)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tour_runs_verbatim_against_full_stack() {
    tokio::time::timeout(TEST_TIMEOUT, tour())
        .await
        .expect("the tour took longer than its bound");
}

async fn tour() {
    let redis = nexus_testkit::RedisServer::start().await.unwrap();
    // A free port nobody listens on: no broker, so events go in process.
    let no_kafka = format!("127.0.0.1:{}", nexus_testkit::free_port().unwrap());
    let stack = stack::Stack::start(stack::Options {
        gateway_port: 0,
        upstream_ports: vec![0, 0],
        proxy_port: 0,
        redis: redis.url(),
        kafka: no_kafka,
        cache_policy: None,
        cache_admin: Some("127.0.0.1:0".parse().unwrap()),
        consumer_admin: Some("127.0.0.1:0".parse().unwrap()),
        gateway_tracing: false,
    })
    .await
    .unwrap();
    assert!(matches!(stack.redis, stack::RedisSource::Existing));
    assert_eq!(stack.events, stack::EventsMode::InProcess);
    let banner = stack.banner();
    let admin = stack.cache_admin.expect("cache proxy admin configured");
    assert!(
        banner.contains(&format!("http://{admin}/stats")),
        "{banner}"
    );
    let consumer_admin = stack.consumer_admin.expect("consumer admin configured");
    assert!(
        banner.contains(&format!("http://{consumer_admin}/stats")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://{}", stack.gateway)),
        "{banner}"
    );
    assert!(banner.contains("/dashboard"), "{banner}");
    assert!(banner.contains("NOT USED"), "{banner}");
    let (gw, px) = (stack.gateway.port(), stack.proxy.port());
    assert!(![3000, 3001, 3002, 6380].contains(&gw));

    let blocks = tour_blocks();
    let names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "token",
        "keep-token",
        "product",
        "no-token",
        "lb-stats",
        "cb-stats",
        "cache",
        "telemetry",
        "metrics",
    ] {
        assert!(
            names.contains(&expected),
            "docs/tour.md lacks tour:{expected} (has {names:?})"
        );
    }

    let mut shell = Shell::start();
    for (i, (name, commands)) in blocks.iter().enumerate() {
        // The tour is written for the seed ports; the test runs on free ones.
        assert!(
            commands.contains("localhost:3000") || commands.contains("-p 6380"),
            "{name}"
        );
        let commands = commands
            .replace("localhost:3000", &format!("localhost:{gw}"))
            .replace("-p 6380", &format!("-p {px}"));
        let (out, status) = shell.run(i, &commands).await;
        assert_eq!(status, 0, "tour:{name} failed:\n{commands}\n{out}");
        let ctx = format!("tour:{name}\n{commands}\n--- output ---\n{out}");
        match name.as_str() {
            "token" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                assert_eq!(v["token_type"], "Bearer", "{ctx}");
                assert_eq!(
                    v["access_token"].as_str().unwrap().split('.').count(),
                    3,
                    "{ctx}"
                );
            }
            "keep-token" => {
                let t = out.trim();
                assert!(t.starts_with("eyJ") && t.split('.').count() == 3, "{ctx}");
            }
            "product" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                let expected: serde_json::Value =
                    serde_json::from_str(mock_upstream_app::PRODUCTS).unwrap();
                assert_eq!(v["data"], expected, "{ctx}");
            }
            "no-token" => assert_eq!(out.trim(), "401", "{ctx}"),
            "lb-stats" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                let urls: Vec<&str> = v["endpoints"]
                    .as_array()
                    .expect(&ctx)
                    .iter()
                    .filter_map(|e| e["url"].as_str())
                    .collect();
                for u in &stack.upstreams {
                    assert!(
                        urls.contains(&format!("http://{u}").as_str()),
                        "{u} missing: {ctx}"
                    );
                }
                let handled: u64 = v["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|e| e["handled"].as_u64())
                    .sum();
                assert!(handled >= 1, "the product request was not counted: {ctx}");
            }
            "cb-stats" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                let circuits = v["circuits"].as_array().expect(&ctx);
                assert!(!circuits.is_empty(), "{ctx}");
                assert!(circuits.iter().all(|c| c["state"] == "closed"), "{ctx}");
            }
            "cache" => {
                assert_eq!(out.lines().collect::<Vec<_>>(), ["OK", "bar"], "{ctx}");
                // It went through the proxy to the real Redis.
                assert_eq!(redis.cli(["GET", "foo"]).await.unwrap(), "bar");
                // The proxy's admin server counted it: the GET was a hit.
                let stats = curl(&[&format!("http://{admin}/stats")]).await;
                let stats: serde_json::Value = serde_json::from_str(&stats).expect(&stats);
                assert!(stats["get_hits"].as_u64() >= Some(1), "{stats}");
                assert!(stats["commands_total"].as_u64() >= Some(2), "{stats}");
            }
            "telemetry" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                let reqs = v["requests"].as_array().expect(&ctx);
                let seen = |path: &str, status: u64| {
                    reqs.iter()
                        .any(|r| r["path"] == path && r["status"].as_u64() == Some(status))
                };
                assert!(seen("/auth/token", 200), "{ctx}");
                assert!(seen("/api/products", 200), "{ctx}");
                assert!(seen("/api/products", 401), "{ctx}");
                assert!(seen("/lb-stats", 200), "{ctx}");
            }
            "metrics" => {
                assert!(
                    out.lines()
                        .all(|l| l.starts_with("nexus_http_requests_total")),
                    "{ctx}"
                );
                assert!(
                    out.lines()
                        .any(|l| l.contains(r#"route="/api/*""#)
                            && l.contains(r#"status_code="200""#)),
                    "{ctx}"
                );
            }
            "dashboard" => {
                let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&ctx);
                assert_eq!(v["cache"]["status"], "ok", "{ctx}");
                assert_eq!(v["consumer"]["status"], "ok", "{ctx}");
                assert!(v["cache"]["stats"]["get_hits"].as_u64() >= Some(1), "{ctx}");
                assert!(
                    v["gateway"]["requests"]["requests_total"].as_u64() >= Some(5),
                    "{ctx}"
                );
                let upstreams = v["gateway"]["upstreams"].as_array().expect(&ctx);
                assert!(upstreams.len() >= 2, "{ctx}");
            }
            other => panic!("no check for tour:{other}; add one to tests/tour.rs"),
        }
    }
    drop(shell);

    let gateway = stack.gateway;
    tokio::time::timeout(stack::COMPONENT_DEADLINE * 3, stack.shutdown())
        .await
        .expect("shutdown took longer than its bound");
    assert!(
        tokio::net::TcpStream::connect(gateway).await.is_err(),
        "the gateway still accepts connections after shutdown"
    );
}

/// Polls `f` every 100 ms until it holds or `within` passes.
async fn eventually(within: Duration, f: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

async fn curl(args: &[&str]) -> String {
    let out = tokio::time::timeout(
        COMMAND_TIMEOUT,
        Command::new("curl")
            .args(["-s", "--max-time", "10"])
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("curl timed out")
    .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// With a broker, events go through Kafka and the consumer group reads them;
/// the rate limiter's hits get the client's IP blocked in Redis, and the
/// gateway then refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_events_reach_the_consumer_group_and_block_an_abusive_ip() {
    tokio::time::timeout(TEST_TIMEOUT, with_kafka())
        .await
        .expect("the test took longer than its bound");
}

async fn with_kafka() {
    let redis = nexus_testkit::RedisServer::start().await.unwrap();
    let kafka = nexus_testkit::KafkaBroker::start().await.unwrap();
    let stack = stack::Stack::start(stack::Options {
        gateway_port: 0,
        upstream_ports: vec![0, 0],
        proxy_port: 0,
        redis: redis.url(),
        kafka: kafka.bootstrap(),
        cache_policy: None,
        cache_admin: Some("127.0.0.1:0".parse().unwrap()),
        consumer_admin: Some("127.0.0.1:0".parse().unwrap()),
        gateway_tracing: false,
    })
    .await
    .unwrap();
    assert_eq!(stack.events, stack::EventsMode::Kafka);
    let banner = stack.banner();
    assert!(banner.contains("group nexus-consumer-group"), "{banner}");
    let stats = stack.consumer_stats().clone();
    let base = format!("http://127.0.0.1:{}", stack.gateway.port());

    // One proxied request: `gateway.request.completed` reaches the consumer.
    let token = curl(&[
        "-X",
        "POST",
        &format!("{base}/auth/token"),
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"client_id":"gateway-client","client_secret":"supersecret123"}"#,
    ])
    .await;
    let token: serde_json::Value = serde_json::from_str(&token).expect(&token);
    let auth = format!(
        "Authorization: Bearer {}",
        token["access_token"].as_str().unwrap()
    );
    let product = curl(&[&format!("{base}/api/products"), "-H", &auth]).await;
    assert!(product.contains("Laptop"), "{product}");
    assert!(
        eventually(Duration::from_secs(30), || {
            nexus_consumer::Stats::get(&stats.requests_completed) >= 1
        })
        .await,
        "no request.completed event reached the consumer group"
    );

    // Burst past the rate limit (seed: 10 tokens, 2/s): at least 5 hits block the IP.
    let health = format!("{base}/health");
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(curl(&["-o", "/dev/null", "-w", "%{http_code}", &health]).await);
    }
    assert!(codes.iter().any(|c| c == "429"), "no 429 in {codes:?}");
    let records = |s: &nexus_consumer::Stats| nexus_consumer::Stats::get(&s.records);
    assert!(
        eventually(Duration::from_secs(30), || {
            nexus_consumer::Stats::get(&stats.ips_blocked) >= 1
        })
        .await,
        "the consumer blocked no IP (records read: {}, rate-limit hits: {})",
        records(&stats),
        nexus_consumer::Stats::get(&stats.rate_limit_hits)
    );
    assert_eq!(
        redis
            .cli(["EXISTS", "nexus:blocked:127.0.0.1"])
            .await
            .unwrap(),
        "1"
    );
    // The consumer admin's /stats (what the dashboard reads) reports it.
    let admin = stack.consumer_admin.expect("consumer admin configured");
    let consumer = curl(&[&format!("http://{admin}/stats")]).await;
    let consumer: serde_json::Value = serde_json::from_str(&consumer).expect(&consumer);
    assert_eq!(consumer["blocked_ips"][0]["ip"], "127.0.0.1", "{consumer}");
    assert!(
        consumer["by_type"]["gateway.request.completed"].as_u64() >= Some(1),
        "{consumer}"
    );
    assert!(
        consumer["producer"]["sent"].as_u64() >= Some(1),
        "{consumer}"
    );
    // Every gateway enforces the block (pub/sub or the periodic refresh).
    let mut last;
    let blocked = {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            last = curl(&["-o", "/dev/null", "-w", "%{http_code}", &health]).await;
            if last == "403" || tokio::time::Instant::now() > deadline {
                break last == "403";
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    assert!(blocked, "the gateway still answers {last} to a blocked IP");

    tokio::time::timeout(stack::COMPONENT_DEADLINE * 3, stack.shutdown())
        .await
        .expect("shutdown took longer than its bound");
}
