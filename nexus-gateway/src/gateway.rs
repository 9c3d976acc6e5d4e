//! [`Gateway`]: builds the layer stack from [`Settings`] and serves it.
//!
//! Stack, outermost first: (`tracing.enabled` only) `SERVER` trace span -> entry (request id, normalisation, span, metrics,
//! telemetry, events) -> blocklist -> rate limit -> JWT (public routes skipped) ->
//! router (`/auth/token`, admin routes, `/api/*` proxy).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower::util::{BoxCloneSyncService, Either};
use tower_layer::Layer as _;
use tower_service::Service;

use crate::auth::{JwtAuth, JwtAuthLayer, JwtKeys};
use crate::blocklist::Blocklist;
use crate::config::{ConfigError, ServerSettings, Settings};
use crate::events::{EventSink, LogSink};
use crate::layers::{BlockGuard, BlocklistLayer, Entry, EntryLayer};
use crate::metrics::{CircuitGauge, Metrics};
use crate::proxy::{
    Breakers, CircuitListener, CircuitTransition, LbUpstreams, NexusBreakers, Proxy, Upstreams,
};
use crate::response::GatewayResponse;
use crate::router::Router;
use crate::telemetry::Telemetry;

mod conn;

pub use conn::MAX_HEADER_BUF;

/// Most concurrent client connections; further accepts wait for a slot.
pub const MAX_CONNECTIONS: usize = 16_384;
/// Default time a client has to show its protocol and send request headers
/// (slowloris bound; `server.header_read_timeout_ms`).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The type-erased request service (for embedding; see [`Gateway::service`]).
pub type GatewayService = BoxCloneSyncService<Request<Incoming>, GatewayResponse, Infallible>;

/// JWT verification in front of the router.
type Authed = JwtAuth<Router>;
/// The rate limit, when configured.
type Limited = Either<crate::ratelimit::Limited<Authed>, Authed>;
/// The blocklist check, when configured.
type Checked = Either<BlockGuard<Limited>, Limited>;
/// What each connection calls: the concrete stack (no boxed service or future
/// per layer), or, with `tracing.enabled`, the boxed stack under the `SERVER`
/// span layer.
type Stack = Either<GatewayService, Entry<Checked>>;

/// Error building or running a gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// State shared by the router and the handlers.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) keys: Arc<JwtKeys>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) telemetry: Arc<Telemetry>,
    pub(crate) proxy: Proxy,
    pub(crate) blocklist: Option<Arc<dyn Blocklist>>,
    pub(crate) events: Arc<dyn EventSink>,
    pub(crate) dashboard: crate::admin::Dashboard,
}

/// Turns circuit transitions into the state gauge, opens counter and balancer health.
struct GatewayCircuitListener {
    metrics: Arc<Metrics>,
    upstreams: Arc<dyn Upstreams>,
    reset_timeout: Duration,
}

impl CircuitListener for GatewayCircuitListener {
    fn on_transition(&self, upstream: &Arc<str>, t: CircuitTransition) {
        if !self.upstreams.contains(upstream) {
            // A call to an endpoint discovery removed finished: its series
            // and breaker are gone and stay gone.
            return;
        }
        let (gauge, open) = match t {
            CircuitTransition::Opened => (CircuitGauge::Open, true),
            CircuitTransition::HalfOpened => (CircuitGauge::HalfOpen, false),
            CircuitTransition::Closed => (CircuitGauge::Closed, false),
        };
        tracing::info!(upstream = %upstream, transition = ?t, "circuit state change");
        self.metrics.circuit_state(upstream, gauge);
        self.upstreams.circuit_changed(upstream, open);
        if open {
            // Passive health: the endpoint leaves the rotation while open and comes
            // back as a candidate after the reset timeout, when the breaker admits a
            // half-open probe. One short task per opening (rare by nature).
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let upstreams = self.upstreams.clone();
                let url = upstream.clone();
                let after = self.reset_timeout;
                rt.spawn(async move {
                    tokio::time::sleep(after).await;
                    upstreams.circuit_changed(&url, false);
                });
            }
        }
    }
}

/// Builder for [`Gateway`].
pub struct GatewayBuilder {
    settings: Settings,
    events: Option<Arc<dyn EventSink>>,
    blocklist: Option<Arc<dyn Blocklist>>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A built gateway: the service stack plus its background tasks.
pub struct Gateway {
    service: Stack,
    shared: Arc<Shared>,
    _housekeeper: Option<crate::ratelimit::Housekeeper>,
    _emitter_task: Option<nexus_events::EmitterTask>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.shared.settings.listen)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// Where lifecycle events go (default: Kafka through `nexus_events::Emitter`
    /// when `events.kafka_bootstrap` is set, else [`LogSink`]; a sink given here
    /// takes precedence).
    pub fn event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// The blocklist view checked before everything else (default: none, or a
    /// [`RedisBlocklist`](crate::RedisBlocklist) when `blocklist.redis_url` is set;
    /// a view given here takes precedence over the config).
    pub fn blocklist(mut self, list: Arc<dyn Blocklist>) -> Self {
        self.blocklist = Some(list);
        self
    }

    /// Builds the stack and starts background tasks (must run inside a tokio runtime).
    ///
    /// Reads `proxy.services_file` once now (an unreadable or invalid file is an
    /// error) and then watches it.
    pub fn build(self) -> Result<Gateway, GatewayError> {
        let settings = self.settings;
        for w in &settings.warnings {
            tracing::warn!("{w}");
        }
        let keys = Arc::new(JwtKeys::from_settings(&settings.auth)?);
        let (events, emitter_task) = match (self.events, &settings.kafka_bootstrap) {
            (Some(sink), _) => (sink, None),
            (None, Some(bootstrap)) => {
                let (emitter, task) = kafka_emitter(bootstrap, settings.kafka_create_topics)?;
                (Arc::new(emitter) as Arc<dyn EventSink>, Some(task))
            }
            (None, None) => (Arc::new(LogSink) as Arc<dyn EventSink>, None),
        };
        let metrics = Arc::new(Metrics::new());
        let telemetry = Arc::new(Telemetry::new(settings.telemetry_capacity.get()));

        let lb = Arc::new(LbUpstreams::start(&settings.proxy)?);
        let upstreams: Arc<dyn Upstreams> = lb.clone();

        let breakers: Option<Arc<dyn Breakers>> = match &settings.breaker {
            Some(cfg) => {
                let listener = Arc::new(GatewayCircuitListener {
                    metrics: metrics.clone(),
                    upstreams: upstreams.clone(),
                    reset_timeout: cfg.reset_timeout,
                });
                Some(Arc::new(NexusBreakers::new(cfg, listener)?))
            }
            None => None,
        };
        {
            // Weak: the breakers' listener holds the balancer, which holds this hook.
            let metrics = Arc::downgrade(&metrics);
            let breakers = breakers.as_ref().map(Arc::downgrade);
            lb.on_removed(move |url| {
                if let Some(b) = breakers.as_ref().and_then(std::sync::Weak::upgrade) {
                    b.forget(url);
                }
                if let Some(m) = metrics.upgrade() {
                    m.forget_upstream(url);
                }
                tracing::info!(upstream = %url, "endpoint removed: breaker and metric series dropped");
            });
        }
        let proxy = Proxy::new(
            settings.proxy.clone(),
            settings.transform.clone(),
            upstreams,
            breakers,
            metrics.clone(),
            events.clone(),
        )
        .trace_upstream(settings.tracing);
        let blocklist = match (self.blocklist, &settings.blocklist_redis_url) {
            (Some(list), _) => Some(list),
            (None, Some(url)) => Some(Arc::new(
                crate::RedisBlocklist::start(url, settings.blocklist_refresh)
                    .map_err(|e| ConfigError::invalid("blocklist.redis_url", e.to_string()))?,
            ) as Arc<dyn Blocklist>),
            (None, None) => None,
        };
        let dashboard = crate::admin::Dashboard::new(&settings.dashboard);
        let shared = Arc::new(Shared {
            settings,
            keys: keys.clone(),
            metrics: metrics.clone(),
            telemetry: telemetry.clone(),
            proxy,
            blocklist: blocklist.clone(),
            events: events.clone(),
            dashboard,
        });

        let authed: Authed = JwtAuthLayer::new(keys)
            .context_only()
            .layer(Router::new(shared.clone()));
        let (limited, housekeeper): (Limited, _) = match &shared.settings.rate_limit {
            Some(rl) => {
                let (svc, hk) =
                    crate::ratelimit::layer(authed, rl, metrics.clone(), events.clone())?;
                (Either::Left(svc), Some(hk))
            }
            None => (Either::Right(authed), None),
        };
        let checked: Checked = match blocklist {
            Some(list) => Either::Left(BlocklistLayer::new(list).layer(limited)),
            None => Either::Right(limited),
        };
        let entry = EntryLayer::new(metrics, telemetry, events).layer(checked);
        // Outermost when enabled; when disabled the stack is exactly the above.
        let service = if shared.settings.tracing {
            Either::Left(BoxCloneSyncService::new(
                server_trace_layer().layer(BoxCloneSyncService::new(entry)),
            ))
        } else {
            Either::Right(entry)
        };
        Ok(Gateway {
            service,
            shared,
            _housekeeper: housekeeper,
            _emitter_task: emitter_task,
        })
    }
}

impl Gateway {
    /// Starts building a gateway from validated settings.
    pub fn builder(settings: Settings) -> GatewayBuilder {
        GatewayBuilder {
            settings,
            events: None,
            blocklist: None,
        }
    }

    /// The request service (for embedding in another server or calling directly).
    pub fn service(&self) -> GatewayService {
        match &self.service {
            Either::Left(boxed) => boxed.clone(),
            Either::Right(entry) => BoxCloneSyncService::new(entry.clone()),
        }
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The settings the gateway runs with.
    pub fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Binds `settings.listen` and serves until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), GatewayError> {
        let listener = TcpListener::bind(self.shared.settings.listen).await?;
        tracing::info!(addr = %listener.local_addr()?, "gateway listening");
        self.serve(listener, shutdown).await
    }

    /// Serves connections from `listener` until `shutdown` completes, then stops
    /// accepting and drains in-flight requests up to the configured deadline.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let drain = self.shared.settings.drain_timeout;
        let limits = self.shared.settings.server;
        serve_connections(
            self.service.clone(),
            listener,
            slots,
            limits,
            drain,
            shutdown,
        )
        .await;
        Ok(())
    }

    /// Binds `settings.listen` `workers` times with `SO_REUSEPORT` and serves each
    /// socket from its own thread running a current-thread runtime (nginx's
    /// worker model: the kernel spreads connections over the workers and a
    /// request, with its upstream connection, stays on one thread). Background
    /// tasks (discovery, limiter housekeeping, events) stay on the calling
    /// runtime. Returns once `shutdown` completed and every worker drained.
    ///
    /// [`MAX_CONNECTIONS`] bounds the connections of all workers together.
    pub async fn run_per_core(
        self,
        workers: NonZeroUsize,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let listeners = ReusePortListeners::bind(self.shared.settings.listen, workers)?;
        self.serve_per_core(listeners, shutdown).await
    }

    /// Like [`run_per_core`](Self::run_per_core) on sockets bound beforehand
    /// (one worker per socket), e.g. to learn the port when `listen` has port 0.
    pub async fn serve_per_core(
        self,
        listeners: ReusePortListeners,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), GatewayError> {
        let ReusePortListeners { listeners, addr } = listeners;
        tracing::info!(%addr, workers = listeners.len(), "gateway listening (one runtime per worker)");
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let drain = self.shared.settings.drain_timeout;
        let limits = self.shared.settings.server;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut threads = Vec::with_capacity(listeners.len());
        for (i, listener) in listeners.into_iter().enumerate() {
            let service = self.service.clone();
            let slots = slots.clone();
            let mut stop = stop_rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("nexus-gw-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let listener = TcpListener::from_std(listener)?;
                        let stopped = async move {
                            let _ = stop.wait_for(|s| *s).await;
                        };
                        serve_connections(service, listener, slots, limits, drain, stopped).await;
                        Ok(())
                    })
                })?;
            threads.push(thread);
        }
        shutdown.await;
        let _ = stop_tx.send(true);
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("worker panicked")))
                })
                .collect::<Result<Vec<()>, _>>()
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        joined?;
        Ok(())
    }
}

/// Accept backlog of each `SO_REUSEPORT` listener.
const LISTEN_BACKLOG: u32 = 1024;

/// Listening sockets bound to one address with `SO_REUSEPORT`, one per worker of
/// [`Gateway::serve_per_core`] (the kernel spreads new connections over them).
/// They listen from [`bind`](Self::bind) on, so connections made before the
/// workers start wait in the backlog instead of being refused.
#[derive(Debug)]
pub struct ReusePortListeners {
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
}

impl ReusePortListeners {
    /// Binds `workers` listening sockets to `addr`; with port 0 they all share
    /// the port the first one got. Must be called inside a tokio runtime (an
    /// error otherwise).
    pub fn bind(addr: SocketAddr, workers: NonZeroUsize) -> std::io::Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(std::io::Error::other(
                "ReusePortListeners::bind needs a tokio runtime",
            ));
        }
        let mut addr = addr;
        let mut listeners = Vec::with_capacity(workers.get());
        for _ in 0..workers.get() {
            let socket = reuseport_socket(addr)?;
            addr = socket.local_addr()?;
            // Deregistered from this runtime; each worker registers its own.
            listeners.push(socket.listen(LISTEN_BACKLOG)?.into_std()?);
        }
        Ok(Self { listeners, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A bound (not yet listening) socket with `SO_REUSEADDR` and `SO_REUSEPORT`.
fn reuseport_socket(addr: SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

/// The accept loop shared by [`Gateway::serve`] and each worker of
/// [`Gateway::run_per_core`]: serves until `shutdown`, then drains up to `drain`.
async fn serve_connections(
    service: Stack,
    listener: TcpListener,
    slots: Arc<Semaphore>,
    limits: ServerSettings,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let protocols = Arc::new(conn::Protocols::new(limits));
    // Every connection task holds a receiver: `send(true)` asks them to shut
    // down gracefully.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The connection tasks, so the drain deadline can abort them. Holds at most
    // the live connections (each holds a `slots` permit) plus those that ended
    // since the last accept (reaped before each accept).
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let served = conn::serve(
            stream,
            peer,
            service.clone(),
            protocols.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(async move {
            served.await;
            drop(permit);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    tracing::info!(deadline = ?drain, "shutting down: draining in-flight requests");
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, drained).await.is_ok() {
        tracing::info!("drained");
    } else {
        tracing::warn!(
            remaining = tasks.len(),
            "drain deadline reached; closing remaining connections"
        );
        // Aborting drops each connection (and its requests' futures, which
        // record 499), so nothing answers once this returns.
        tasks.shutdown().await;
    }
}

/// One connection's copy of the stack. hyper calls a connection's service
/// through `&self`, synchronously from the connection's task (also for the
/// concurrent streams of an HTTP/2 connection); tower's `call` needs `&mut self`
/// after `poll_ready`. Instead of cloning the stack for every request (what
/// `oneshot` on a clone would do), the connection keeps one copy in a
/// `RefCell`, borrowed only for the synchronous `poll_ready` + `call`.
struct ConnService {
    ready: std::cell::RefCell<Stack>,
    /// Cloned only if `ready` were ever found borrowed.
    spare: Stack,
}

impl ConnService {
    fn new(service: Stack) -> Self {
        Self {
            ready: std::cell::RefCell::new(service.clone()),
            spare: service,
        }
    }

    fn call(
        &self,
        req: Request<Incoming>,
    ) -> futures_util::future::Either<
        <Stack as Service<Request<Incoming>>>::Future,
        tower::util::Oneshot<Stack, Request<Incoming>>,
    > {
        use futures_util::future::Either;
        // Never held across an await, and hyper does not re-enter `call`; the
        // fallback keeps this panic-free all the same.
        let Ok(mut svc) = self.ready.try_borrow_mut() else {
            return Either::Right(self.spare.clone().oneshot(req));
        };
        // Every layer of the stack is always ready (none applies backpressure
        // through `poll_ready`); should one ever not be, the request waits on a
        // clone through `oneshot` with a real waker.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match svc.poll_ready(&mut cx) {
            std::task::Poll::Ready(Ok(())) => Either::Left(svc.call(req)),
            _ => Either::Right(svc.clone().oneshot(req)),
        }
    }
}

/// An emitter whose background task produces to Kafka (connects lazily; a down
/// broker drops and counts events, never blocks requests).
fn kafka_emitter(
    bootstrap: &str,
    create_topics: bool,
) -> Result<(nexus_events::Emitter, nexus_events::EmitterTask), ConfigError> {
    let mut cfg = nexus_events::kafka::ProducerConfig::new(bootstrap);
    cfg.client.client_id = "nexus-gateway".to_owned();
    if create_topics {
        cfg.create_topics = Some(nexus_events::kafka::TopicSpec::default());
    }
    let sink = nexus_events::KafkaSink::new(cfg)
        .map_err(|e| ConfigError::invalid("events.kafka_bootstrap", e.to_string()))?;
    nexus_events::Emitter::spawn(sink, nexus_events::EmitterConfig::default())
        .map_err(|e| ConfigError::invalid("events", e.to_string()))
}

/// `SERVER` span per request, named after the matched route template (the
/// entry layer's classification of the normalised path, never the raw path).
fn server_trace_layer() -> nexus_telemetry::layer::ServerTraceLayer {
    nexus_telemetry::layer::ServerTraceLayer::new().route_fn(|_, uri| {
        let path = crate::path::normalize(uri.path()).ok()?;
        Some(nexus_telemetry::layer::RouteTemplate::from_static(
            crate::path::Route::classify(&path).template(),
        ))
    })
}

/// Completes on SIGTERM or ctrl-c (for binaries).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
