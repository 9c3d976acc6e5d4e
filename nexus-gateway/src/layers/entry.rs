//! [`EntryLayer`]: the outermost layer.
//!
//! On the way in: keeps a valid client `x-request-id` or generates one, normalises
//! the path (400 on bypass spellings), classifies the route, rewrites the URI to
//! the normalised path, and opens a trace span. On the way out: returns the request
//! id, and records metrics, telemetry and a `request.completed` event.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{HeaderValue, Request, StatusCode, Uri};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::auth::Principal;
use crate::events::{EventSink, GatewayEvent};
use crate::layers::IpBlocked;
use crate::metrics::Metrics;
use crate::path::{Route, normalize};
use crate::proxy::transform::X_REQUEST_ID;
use crate::response::{GatewayResponse, error};
use crate::telemetry::{Telemetry, TelemetryEntry};
use crate::util::{new_request_id, valid_request_id};

/// What the gateway knows about a request, kept in its extensions as one value.
///
/// Inserted once by the entry layer; [`JwtAuth`](crate::auth::JwtAuth) fills in
/// the [`Principal`] on protected routes. One extension instead of one per item:
/// every extension costs an allocation, and the first one a map as well.
///
/// The router hands the request's extensions back on the response, so layers
/// outside the router (the entry layer's telemetry, for the client id) find the
/// context on the response too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The classified route of the normalised path.
    pub route: Route,
    /// The request id: the client's valid `x-request-id`, or a generated one.
    /// Read it here: the request's own headers are left as the client sent them
    /// (the proxy sets `x-request-id` upstream, the entry layer on the response).
    pub request_id: HeaderValue,
    /// The authenticated caller (`None` on public routes and before JWT verification).
    pub principal: Option<Principal>,
    /// The client's TCP peer (see [`Entry::for_peer`]).
    pub peer: Option<SocketAddr>,
}

/// The TCP peer of a request: its [`RequestContext`]'s, else a `SocketAddr`
/// extension (requests that did not pass the entry layer, or whose peer was
/// only inserted by a layer inside the entry layer).
pub fn peer_addr(ext: &http::Extensions) -> Option<SocketAddr> {
    ext.get::<RequestContext>()
        .and_then(|c| c.peer)
        .or_else(|| ext.get::<SocketAddr>().copied())
}

/// The status recorded for a request whose client went away before the
/// response was ready (nginx's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the entry layer records into.
///
/// One `Arc` inside: cloning the layer or its service is one reference-count
/// increment.
#[derive(Clone)]
pub struct EntryLayer {
    shared: Arc<EntryShared>,
}

struct EntryShared {
    /// Shared so that unauthenticated requests do not allocate a client name.
    anonymous: Arc<str>,
    metrics: Arc<Metrics>,
    telemetry: Arc<Telemetry>,
    events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for EntryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryLayer").finish_non_exhaustive()
    }
}

impl EntryLayer {
    /// New entry layer.
    pub fn new(
        metrics: Arc<Metrics>,
        telemetry: Arc<Telemetry>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            shared: Arc::new(EntryShared {
                anonymous: Arc::from("anonymous"),
                metrics,
                telemetry,
                events,
            }),
        }
    }
}

impl<S> Layer<S> for EntryLayer {
    type Service = Entry<S>;
    fn layer(&self, inner: S) -> Entry<S> {
        Entry {
            inner,
            shared: self.shared.clone(),
            peer: None,
        }
    }
}

/// Service produced by [`EntryLayer`].
#[derive(Clone)]
pub struct Entry<S> {
    inner: S,
    shared: Arc<EntryShared>,
    /// The connection's peer, when this copy serves one connection.
    peer: Option<SocketAddr>,
}

impl<S> Entry<S> {
    /// This copy serves one connection from `peer`: the entry layer puts it in
    /// the [`RequestContext`] itself. Without it, the peer is read from a
    /// `SocketAddr` request extension, as a server commonly inserts (one
    /// extension less per request when the connection's copy knows it).
    pub fn for_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Entry<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the entry layer remembers of a request until its response.
struct Done {
    start: Instant,
    method: http::Method,
    route: Route,
    path: String,
    peer: Option<SocketAddr>,
    request_id: HeaderValue,
}

impl EntryShared {
    fn emit_completed(&self, d: &Done, status: u16, millis: f64, client: &Arc<str>) {
        self.events.emit(GatewayEvent::RequestCompleted {
            method: d.method.to_string(),
            url: d.path.clone(),
            status_code: status,
            latency_ms: millis,
            client_id: client.clone(),
            correlation_id: d.request_id.to_str().unwrap_or_default().to_owned(),
        });
    }

    /// Records a completed request and puts its id on the response.
    fn finish(&self, d: Done, res: &mut GatewayResponse) {
        if res.extensions().get::<IpBlocked>().is_some() {
            self.metrics.ip_blocked();
        }
        // The router hands the context (with the principal) back; another inner
        // service leaves it to `JwtAuth` to put a `Principal` on the response.
        let ext = res.extensions();
        let client: Arc<str> = ext
            .get::<RequestContext>()
            .and_then(|c| c.principal.as_ref())
            .or_else(|| ext.get::<Principal>())
            .map_or_else(|| self.anonymous.clone(), |p| p.subject.clone());
        let request_id = self.record(d, res.status().as_u16(), client);
        res.headers_mut().insert(X_REQUEST_ID, request_id);
    }

    /// Records a request dropped before its response was ready (the client
    /// went away, or the server cut the connection): status
    /// [`CLIENT_CLOSED_REQUEST`]. The client id is not known here: the verified
    /// principal lived in the request, which the dropped inner future owned.
    fn aborted(&self, d: Done) {
        let _id = self.record(d, CLIENT_CLOSED_REQUEST, self.anonymous.clone());
    }

    /// Metrics, debug log, `request.completed` event and telemetry entry.
    fn record(&self, d: Done, status: u16, client: Arc<str>) -> HeaderValue {
        let millis = d.start.elapsed().as_secs_f64() * 1000.0;
        self.metrics
            .record_request(&d.method, d.route.template(), status, millis);
        tracing::debug!(status, latency_ms = millis, client = %client, "request completed");
        // The seed emits `request.completed` for proxied requests only.
        if d.route == Route::Api && self.events.wants_completed() {
            self.emit_completed(&d, status, millis, &client);
        }
        self.telemetry.push(TelemetryEntry {
            method: d.method,
            path: d.path,
            status,
            latency_ms: millis,
            client,
            ip: d.peer.map(|p| p.ip()),
            timestamp: SystemTime::now(),
        });
        d.request_id
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Entry`]: the inner response with the request id
    /// returned and the request recorded, or the ready 400 for a bad path.
    ///
    /// Dropped before the inner response is ready (the client went away), it
    /// records the request with status [`CLIENT_CLOSED_REQUEST`].
    pub struct EntryFuture<F> {
        #[pin]
        state: State<F>,
    }

    impl<F> PinnedDrop for EntryFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Nothing to do after `finish` (`done` taken) or for a ready 400;
            // nothing recorded while unwinding from a panic.
            if let StateProj::Called { span, done, shared, .. } = this.project().state.project()
                && let Some(d) = done.take()
                && !std::thread::panicking()
            {
                let _entered = span.enter();
                shared.aborted(d);
            }
        }
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            fut: F,
            // Entered around every poll of `fut` and around `finish`, so the
            // completion log line and event belong to the request span.
            span: tracing::Span,
            done: Option<Done>,
            shared: Arc<EntryShared>,
        },
        Ready { res: Option<GatewayResponse> },
    }
}

impl<F> std::fmt::Debug for EntryFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryFuture").finish_non_exhaustive()
    }
}

impl<F> Future for EntryFuture<F>
where
    F: Future<Output = Result<GatewayResponse, Infallible>>,
{
    type Output = Result<GatewayResponse, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called {
                fut,
                span,
                done,
                shared,
            } => {
                let _entered = span.enter();
                let mut res = std::task::ready!(fut.poll(cx))?;
                if let Some(d) = done.take() {
                    shared.finish(d, &mut res);
                }
                Poll::Ready(Ok(res))
            }
            // Polled again after completion: a 500 rather than a panic.
            StateProj::Ready { res } => Poll::Ready(Ok(res.take().unwrap_or_else(|| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "polled twice",
                )
            }))),
        }
    }
}

impl<S, B> Service<Request<B>> for Entry<S>
where
    S: Service<Request<B>, Response = GatewayResponse, Error = Infallible>,
{
    type Response = GatewayResponse;
    type Error = Infallible;
    type Future = EntryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let request_id = match req.headers().get(X_REQUEST_ID) {
            Some(v) if valid_request_id(v) => v.clone(),
            _ => new_request_id(),
        };
        let peer = self
            .peer
            .or_else(|| req.extensions().get::<SocketAddr>().copied());
        let method = req.method().clone();
        let normalized = normalize(req.uri().path());
        let (path, route) = match normalized {
            Ok(p) => {
                let route = Route::classify(&p);
                (p, route)
            }
            Err(e) => {
                let mut res = error(StatusCode::BAD_REQUEST, "bad_path", &e.to_string());
                let done = Done {
                    start,
                    method,
                    route: Route::NotFound,
                    path: req.uri().path().chars().take(256).collect(),
                    peer,
                    request_id,
                };
                self.shared.finish(done, &mut res);
                return EntryFuture {
                    state: State::Ready { res: Some(res) },
                };
            }
        };
        if path != req.uri().path() {
            let pq = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            if let Ok(uri) = Uri::builder().path_and_query(pq).build() {
                *req.uri_mut() = uri;
            }
        }
        req.extensions_mut().insert(RequestContext {
            route,
            request_id: request_id.clone(),
            principal: None,
            peer,
        });
        let span = tracing::info_span!(
            "request",
            method = method.as_str(),
            route = route.template(),
            request_id = request_id.to_str().unwrap_or_default(),
        );
        let fut = self.inner.call(req);
        EntryFuture {
            state: State::Called {
                fut,
                span,
                done: Some(Done {
                    start,
                    method,
                    route,
                    path,
                    peer,
                    request_id,
                }),
                shared: self.shared.clone(),
            },
        }
    }
}
