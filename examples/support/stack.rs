//! The whole Nexus system in one process: the logic of the `full_stack`
//! example, shared with the tour test (`tests/tour.rs`) through `#[path]`.
//!
//! [`Stack::start`] probes Redis and Kafka, starts what is missing or falls
//! back, then starts two mock upstreams, the gateway, the cache proxy and the
//! consumer, each as an owned task that stops when [`Stack::shutdown`] is
//! called. Everything here is composition: configs are built and handed to
//! the library builders.
//!
//! Expects the including crate to declare `mod mock_upstream_app;` (the
//! `examples/support/mock_upstream_app.rs` module) at its root.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use nexus_events::{DeliveryReport, Emitter, EmitterConfig, EmitterTask, Event, EventSink};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::mock_upstream_app::{self, MockOptions};

/// Bound on each probe of Redis or Kafka at start.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on handling one event in process (no Kafka): a Redis write at most.
const IN_PROCESS_EVENT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long in-flight gateway requests may drain at shutdown.
const GATEWAY_DRAIN: Duration = Duration::from_secs(5);
/// Bound on waiting for each component after the shutdown signal.
pub(crate) const COMPONENT_DEADLINE: Duration = Duration::from_secs(8);
/// Events queued for the emitter task (bounded; beyond it events are dropped and counted).
const EVENT_QUEUE: usize = 4096;

/// Where the pieces listen and what they connect to.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Gateway port (seed 3000; 0 picks a free one).
    pub(crate) gateway_port: u16,
    /// Mock upstream ports (seed 3001, 3002; 0 picks free ones).
    pub(crate) upstream_ports: Vec<u16>,
    /// Cache proxy port (seed 6380; 0 picks a free one).
    pub(crate) proxy_port: u16,
    /// Redis URL (`redis://host:port[/db]`; `host:port` is accepted).
    pub(crate) redis: String,
    /// Kafka bootstrap `host:port`.
    pub(crate) kafka: String,
    /// Cache policy YAML for the proxy (reloaded when it changes); none: plain proxy.
    pub(crate) cache_policy: Option<String>,
    /// Cache proxy admin HTTP address (`/metrics`, `/stats`, `/healthz`;
    /// default 127.0.0.1:9380, port 0 picks a free one); none: no admin server.
    pub(crate) cache_admin: Option<SocketAddr>,
    /// Consumer admin HTTP address (`/metrics`, `/stats`, `/healthz`;
    /// default 127.0.0.1:9381, port 0 picks a free one); none: no admin server.
    pub(crate) consumer_admin: Option<SocketAddr>,
    /// Turn on the gateway's `tracing` section (`SERVER`/`CLIENT` spans,
    /// `traceparent` sent upstream); `full_stack` sets it with `--otlp-endpoint`.
    pub(crate) gateway_tracing: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateway_port: 3000,
            upstream_ports: vec![3001, 3002],
            proxy_port: 6380,
            redis: "redis://127.0.0.1:6379".to_owned(),
            kafka: "127.0.0.1:9092".to_owned(),
            cache_policy: None,
            cache_admin: Some(SocketAddr::from(([127, 0, 0, 1], 9380))),
            consumer_admin: Some(SocketAddr::from(([127, 0, 0, 1], 9381))),
            gateway_tracing: false,
        }
    }
}

/// Why the stack could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StackError {
    /// A flag or derived config is invalid.
    #[error("{0}")]
    Config(String),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Redis does not answer and none could be started.
    #[error("{0}")]
    Redis(String),
    /// The gateway refused its configuration.
    #[error("gateway: {0}")]
    Gateway(#[from] nexus_gateway::GatewayError),
    /// Writing the services file failed.
    #[error("services file: {0}")]
    Io(#[from] std::io::Error),
}

/// Where Redis came from.
#[derive(Debug)]
pub(crate) enum RedisSource {
    /// Something already answered `PING`.
    Existing,
    /// A `redis-server` child started by us (killed when dropped).
    Started(nexus_testkit::RedisServer),
}

/// Where events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventsMode {
    /// A broker answered: events are produced to Kafka, the consumer group reads them.
    Kafka,
    /// No broker: events are handed to the consumer's handlers in process.
    InProcess,
}

/// A running stack.
#[derive(Debug)]
pub(crate) struct Stack {
    /// Gateway address.
    pub(crate) gateway: SocketAddr,
    /// Mock upstream addresses.
    pub(crate) upstreams: Vec<SocketAddr>,
    /// Cache proxy address.
    pub(crate) proxy: SocketAddr,
    /// Cache proxy admin address (bound), if any.
    pub(crate) cache_admin: Option<SocketAddr>,
    /// Consumer admin address (bound), if any.
    pub(crate) consumer_admin: Option<SocketAddr>,
    /// Redis URL in use.
    pub(crate) redis_url: String,
    /// Where Redis came from.
    pub(crate) redis: RedisSource,
    /// Kafka bootstrap probed.
    pub(crate) kafka: String,
    /// Why Kafka is not used, when it is not.
    pub(crate) kafka_problem: Option<String>,
    /// Where events go.
    pub(crate) events: EventsMode,
    /// The cache policy file, if any.
    pub(crate) cache_policy: Option<String>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    emitter_task: EmitterTask,
    consumer_stats: Arc<nexus_consumer::Stats>,
    _services_dir: tempfile::TempDir,
}

/// The consumer's handlers driven directly by the emitter task: the consumer
/// logic (auto-block in Redis, circuit alerts, latency spikes) without Kafka.
struct InProcessConsumer {
    handlers: nexus_consumer::handlers::Handlers,
    stats: Arc<nexus_consumer::Stats>,
}

impl EventSink for InProcessConsumer {
    async fn deliver(&mut self, batch: &[Event]) -> DeliveryReport {
        let mut report = DeliveryReport::default();
        for event in batch {
            self.stats
                .records
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match tokio::time::timeout(IN_PROCESS_EVENT_TIMEOUT, self.handlers.handle(event)).await
            {
                Ok(Ok(())) => report.sent += 1,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "in-process consumer could not handle an event");
                    report.failed += 1;
                }
                Err(_) => {
                    tracing::warn!("in-process consumer timed out on an event");
                    report.failed += 1;
                }
            }
        }
        report
    }
}

/// `host:port` of a `redis://[user:pass@]host:port[/db]` URL.
fn redis_host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Accepts `redis://...` or a bare `host:port`.
pub(crate) fn normalize_redis_url(s: &str) -> String {
    if s.contains("://") {
        s.to_owned()
    } else {
        format!("redis://{s}")
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let addr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
    stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
    Ok(stream)
}

/// Redis answers `PING` with `+PONG` (or `-NOAUTH` when it wants a password).
fn probe_redis(addr: &str) -> Result<(), String> {
    let mut stream = connect(addr).map_err(|e| e.to_string())?;
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = [0_u8; 64];
    let n = stream.read(&mut reply).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply[..n]);
    match reply.trim_end() {
        "+PONG" => Ok(()),
        r if r.starts_with("-NOAUTH") => Ok(()),
        other => Err(format!("unexpected reply to PING: {other:?}")),
    }
}

/// A Kafka broker answers `ApiVersions` v0 with our correlation id and error 0.
fn probe_kafka(addr: &str) -> Result<(), String> {
    let mut stream = connect(addr).map_err(|e| e.to_string())?;
    // size, api_key 18, version 0, correlation id 7, client id "full_stack"
    let mut request = vec![0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 7, 0, 10];
    request.extend_from_slice(b"full_stack");
    let size = u32::try_from(request.len() - 4).unwrap_or(0);
    request[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut head = [0_u8; 10]; // size, correlation id, error code
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let error = i16::from_be_bytes([head[8], head[9]]);
    match (correlation, error) {
        (7, 0) => Ok(()),
        _ => Err(format!(
            "not a Kafka broker (ApiVersions: correlation {correlation}, error {error})"
        )),
    }
}

/// Runs a blocking probe off the runtime threads (`T::default()` if it panicked).
async fn blocking<T>(f: impl FnOnce() -> T + Send + 'static) -> T
where
    T: Default + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_default()
}

async fn bind(ip: IpAddr, port: u16) -> Result<TcpListener, StackError> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| StackError::Bind { addr, source })
}

fn local(l: &TcpListener) -> Result<SocketAddr, StackError> {
    Ok(l.local_addr()?)
}

/// Uses the Redis at `url`, or starts `redis-server` on its (loopback) port.
async fn ensure_redis(url: &str) -> Result<RedisSource, StackError> {
    let host_port = redis_host_port(url).to_owned();
    let hp = host_port.clone();
    let probe = blocking(move || Some(probe_redis(&hp))).await;
    let why = match probe {
        Some(Ok(())) => return Ok(RedisSource::Existing),
        Some(Err(e)) => e,
        None => "probe failed".to_owned(),
    };
    let addr: Option<SocketAddr> = host_port.parse().ok();
    let Some(addr) = addr.filter(|a| a.ip().is_loopback()) else {
        return Err(StackError::Redis(format!(
            "Redis at {url} does not answer ({why}); it is not on this machine's loopback, so full_stack does not start one"
        )));
    };
    tracing::info!(%addr, reason = %why, "Redis does not answer: starting redis-server");
    nexus_testkit::RedisServer::builder()
        .port(addr.port())
        .start()
        .await
        .map(RedisSource::Started)
        .map_err(|e| {
            StackError::Redis(format!(
                "Redis at {url} does not answer ({why}) and redis-server could not be started: {e}"
            ))
        })
}

fn spawn_emitter<S: EventSink>(sink: S) -> Result<(Emitter, EmitterTask), StackError> {
    let config = EmitterConfig {
        capacity: EVENT_QUEUE,
        ..EmitterConfig::default()
    };
    Emitter::spawn(sink, config).map_err(|e| StackError::Config(format!("events: {e}")))
}

impl Stack {
    /// Probes, starts every component and returns once all listen.
    pub(crate) async fn start(opts: Options) -> Result<Self, StackError> {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let redis_url = normalize_redis_url(&opts.redis);
        if opts.upstream_ports.is_empty() {
            return Err(StackError::Config("--upstream-ports lists no port".into()));
        }

        // Bind every port first: a taken port fails before anything runs.
        let gateway_listener = bind(loopback, opts.gateway_port).await?;
        let proxy_listener = bind(loopback, opts.proxy_port).await?;
        let mut upstream_listeners = Vec::with_capacity(opts.upstream_ports.len());
        for &p in &opts.upstream_ports {
            upstream_listeners.push(bind(loopback, p).await?);
        }
        let consumer_admin_listener = match opts.consumer_admin {
            Some(a) => Some(bind(a.ip(), a.port()).await?),
            None => None,
        };
        let consumer_admin = consumer_admin_listener.as_ref().map(local).transpose()?;
        let gateway = local(&gateway_listener)?;
        let proxy = local(&proxy_listener)?;
        let upstreams = upstream_listeners
            .iter()
            .map(local)
            .collect::<Result<Vec<_>, _>>()?;

        let redis = ensure_redis(&redis_url).await?;
        let kafka = opts.kafka.clone();
        let k = kafka.clone();
        let kafka_problem = blocking(move || probe_kafka(&k).err()).await;

        let (stop, stop_rx) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            }
        };
        let mut tasks: Vec<(&'static str, JoinHandle<()>)> = Vec::new();

        // Mock upstreams.
        for (i, listener) in upstream_listeners.into_iter().enumerate() {
            let addr = upstreams[i];
            let opts = MockOptions {
                name: format!("mock-{}", addr.port()),
                latency: Duration::ZERO,
                error_rate: 0.0,
            };
            tasks.push((
                "mock upstream",
                tokio::spawn(mock_upstream_app::serve(listener, opts, shutdown())),
            ));
        }

        // Events: Kafka when a broker answers, else the consumer's handlers in process.
        let consumer_config = nexus_consumer::ServiceConfig::new(&kafka, &redis_url);
        let (emitter, emitter_task, events, consumer_stats) = match &kafka_problem {
            None => {
                let mut cfg = nexus_events::kafka::ProducerConfig::new(&kafka);
                cfg.client.client_id = "nexus-gateway".to_owned();
                cfg.create_topics = Some(nexus_events::kafka::TopicSpec::default());
                let sink = nexus_events::KafkaSink::new(cfg)
                    .map_err(|e| StackError::Config(format!("kafka producer: {e}")))?;
                let (emitter, task) = spawn_emitter(sink)?;
                let service = nexus_consumer::ConsumerService::new(consumer_config)
                    .map_err(|e| StackError::Config(format!("consumer: {e}")))?;
                let stats = service.stats();
                let stop_consumer = shutdown();
                tasks.push((
                    "consumer",
                    tokio::spawn(async move {
                        if let Err(e) = service.run(stop_consumer).await {
                            tracing::error!(error = %e, "consumer stopped");
                        }
                    }),
                ));
                (emitter, task, EventsMode::Kafka, stats)
            }
            Some(_) => {
                consumer_config
                    .validate()
                    .map_err(|e| StackError::Config(format!("consumer: {e}")))?;
                let stats = Arc::new(nexus_consumer::Stats::default());
                let handlers =
                    nexus_consumer::handlers::Handlers::new(&consumer_config, stats.clone())
                        .map_err(|e| StackError::Config(format!("consumer: {e}")))?;
                let (emitter, task) = spawn_emitter(InProcessConsumer {
                    handlers,
                    stats: stats.clone(),
                })?;
                (emitter, task, EventsMode::InProcess, stats)
            }
        };

        // Consumer admin (/metrics, /stats, /healthz), Kafka or in process
        // alike; it also reports the gateway's event producer (same process).
        if let Some(listener) = consumer_admin_listener {
            let admin = nexus_consumer::admin::Admin::new(consumer_stats.clone())
                .producer(emitter.stats_handle());
            let stop_admin = shutdown();
            tasks.push((
                "consumer admin",
                tokio::spawn(async move {
                    if let Err(e) = admin.serve(listener, stop_admin).await {
                        tracing::error!(error = %e, "consumer admin stopped");
                    }
                }),
            ));
        }

        // Gateway: dev mode, upstreams from a services file we write, blocklist in Redis.
        let services_dir = tempfile::Builder::new()
            .prefix("nexus-full-stack-")
            .tempdir()?;
        let services_file = services_dir.path().join("services.json");
        let services: Vec<_> = upstreams
            .iter()
            .map(|a| serde_json::json!({ "url": format!("http://{a}"), "weight": 1 }))
            .collect();
        std::fs::write(
            &services_file,
            serde_json::json!({ "services": services }).to_string(),
        )?;
        // Cache proxy in front of Redis (built here so that the gateway's
        // dashboard knows its admin address; it starts serving below).
        let mut proxy_builder = nexus_cache::ProxyConfig::builder()
            .listen(proxy)
            .upstream(redis_url.clone());
        if let Some(path) = &opts.cache_policy {
            proxy_builder =
                proxy_builder.policy_file(nexus_cache::policy::ReloaderConfig::new(path.clone()));
        }
        if let Some(addr) = opts.cache_admin {
            proxy_builder = proxy_builder.admin(addr);
        }
        let proxy_config = proxy_builder
            .build()
            .map_err(|e| StackError::Config(format!("cache proxy: {e}")))?;
        let mut proxy_app = nexus_cache::Proxy::new(proxy_config);
        let cache_admin = proxy_app.bind_admin().await.map_err(|e| {
            StackError::Config(format!("cache proxy admin: {e} (--cache-admin ADDR|off)"))
        })?;

        let mut config = nexus_gateway::GatewayConfig {
            listen: gateway.to_string(),
            dev_mode: true,
            ..Default::default()
        };
        config.proxy.services_file = services_file.display().to_string();
        config.blocklist.redis_url = Some(redis_url.clone());
        config.tracing.enabled = opts.gateway_tracing;
        // The /dashboard page's consumer panel reads this admin server.
        config.dashboard.consumer_admin = consumer_admin.map(|a| format!("http://{a}"));
        // ... and its cache panel this one.
        config.dashboard.cache_admin = cache_admin.map(|a| format!("http://{a}"));
        config.shutdown.drain_timeout_ms = u64::try_from(GATEWAY_DRAIN.as_millis()).unwrap_or(5000);
        let settings = config
            .validate(|k| std::env::var(k).ok())
            .map_err(nexus_gateway::GatewayError::from)?;
        let gateway_app = nexus_gateway::Gateway::builder(settings)
            .event_sink(Arc::new(emitter))
            .build()?;
        let stop_gateway = shutdown();
        tasks.push((
            "gateway",
            tokio::spawn(async move {
                if let Err(e) = gateway_app.serve(gateway_listener, stop_gateway).await {
                    tracing::error!(error = %e, "gateway stopped");
                }
            }),
        ));

        // The cache proxy, configured above.
        let stop_proxy = shutdown();
        tasks.push((
            "cache proxy",
            tokio::spawn(async move {
                if let Err(e) = proxy_app.serve(proxy_listener, stop_proxy).await {
                    tracing::error!(error = %e, "cache proxy stopped");
                }
            }),
        ));

        Ok(Self {
            gateway,
            upstreams,
            proxy,
            cache_admin,
            consumer_admin,
            redis_url,
            redis,
            kafka,
            kafka_problem,
            events,
            cache_policy: opts.cache_policy.clone(),
            stop,
            tasks,
            emitter_task,
            consumer_stats,
            _services_dir: services_dir,
        })
    }

    /// What the consumer has handled so far (through Kafka or in process).
    #[allow(dead_code)] // used by tests/tour.rs, not by the example
    pub(crate) fn consumer_stats(&self) -> &Arc<nexus_consumer::Stats> {
        &self.consumer_stats
    }

    /// What runs where, and three commands to try.
    pub(crate) fn banner(&self) -> String {
        let mut s = String::new();
        let g = self.gateway.port();
        let p = self.proxy.port();
        let _ = writeln!(s, "\nNexus full_stack is running:\n");
        let _ = writeln!(
            s,
            "  gateway         http://{}   (dev mode: built-in signing secret, demo client)",
            self.gateway
        );
        let _ = writeln!(
            s,
            "  dashboard       http://localhost:{g}/dashboard   (sign in: gateway-client / supersecret123)"
        );
        for u in &self.upstreams {
            let _ = writeln!(s, "  mock upstream   http://{u}   /products /health /echo");
        }
        let _ = writeln!(
            s,
            "  cache proxy     redis://{}  -> {}  policy: {}",
            self.proxy,
            self.redis_url,
            self.cache_policy
                .as_deref()
                .unwrap_or("none (plain proxy; --cache-policy FILE)")
        );
        if let Some(a) = self.cache_admin {
            let _ = writeln!(
                s,
                "  cache admin     http://{a}/stats  http://{a}/metrics  http://{a}/healthz"
            );
        }
        let redis = match &self.redis {
            RedisSource::Existing => {
                "reachable at start; not started or stopped by this example".to_owned()
            }
            RedisSource::Started(r) => format!(
                "redis-server child pid {} started by full_stack (no persistence; stopped on exit)",
                r.pid().map_or_else(|| "?".to_owned(), |p| p.to_string())
            ),
        };
        let _ = writeln!(s, "  redis           {}  {redis}", self.redis_url);
        match (self.events, &self.kafka_problem) {
            (EventsMode::Kafka, _) => {
                let _ = writeln!(
                    s,
                    "  kafka           {}  events produced to gateway.* topics",
                    self.kafka
                );
                let _ = writeln!(
                    s,
                    "  consumer        group nexus-consumer-group on {} (auto-block in Redis, circuit alerts, latency spikes)",
                    self.kafka
                );
            }
            (EventsMode::InProcess, problem) => {
                let _ = writeln!(
                    s,
                    "  kafka           NOT USED: no broker answers at {} ({})",
                    self.kafka,
                    problem.as_deref().unwrap_or("unknown")
                );
                let _ = writeln!(
                    s,
                    "  consumer        IN PROCESS: events go through an in-memory queue straight to the consumer's handlers\n                  (auto-block in Redis, circuit alerts, latency spikes); nothing is written to Kafka.\n                  Start a broker (bash scripts/full_stack.sh does) to run them through Kafka."
                );
            }
        }
        if let Some(a) = self.consumer_admin {
            let _ = writeln!(
                s,
                "  consumer admin  http://{a}/stats  http://{a}/metrics  http://{a}/healthz"
            );
        }
        let _ = writeln!(s, "\nTry (a longer tour: docs/tour.md):\n");
        let _ = writeln!(
            s,
            "  curl -s -X POST http://localhost:{g}/auth/token -H 'Content-Type: application/json' -d '{{\"client_id\":\"gateway-client\",\"client_secret\":\"supersecret123\"}}'"
        );
        let _ = writeln!(
            s,
            "  curl -s http://localhost:{g}/api/products -H \"Authorization: Bearer $TOKEN\"    # TOKEN = access_token from the first command"
        );
        let _ = writeln!(
            s,
            "  redis-cli -p {p} SET foo bar && redis-cli -p {p} GET foo"
        );
        let _ = writeln!(s, "\nCtrl-C stops everything.");
        s
    }

    /// Stops every component, waiting for them all up to [`COMPONENT_DEADLINE`]
    /// (then aborting stragglers), then flushes the events (same bound) and
    /// stops the Redis child if we started one: at most twice the deadline.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        // The components stop concurrently: one deadline bounds them all.
        let deadline = tokio::time::Instant::now() + COMPONENT_DEADLINE;
        for (name, mut task) in self.tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(_) => tracing::info!("{name} stopped"),
                Err(_) => {
                    task.abort();
                    tracing::warn!(deadline = ?COMPONENT_DEADLINE, "{name} did not stop in time; aborted");
                }
            }
        }
        let stats = self.emitter_task.shutdown(COMPONENT_DEADLINE).await;
        let c = &self.consumer_stats;
        tracing::info!(
            emitted = stats.emitted,
            sent = stats.sent,
            dropped = stats.dropped(),
            consumer_records = nexus_consumer::Stats::get(&c.records),
            ips_blocked = nexus_consumer::Stats::get(&c.ips_blocked),
            "events stopped"
        );
        if let RedisSource::Started(r) = self.redis {
            r.stop();
            tracing::info!("redis-server stopped");
        }
    }
}
