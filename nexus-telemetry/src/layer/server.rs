//! Server span per inbound request.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response, Uri};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use super::RouteTemplate;
use super::outcome::{self, Side};
use crate::propagation::set_parent_from_headers;

type RouteFn = Arc<dyn Fn(&Method, &Uri) -> Option<RouteTemplate> + Send + Sync>;

/// Wraps a service so every request runs inside a `SERVER` span.
///
/// Span: name `"{method} {route}"` (or `"{method}"` while the route is
/// unknown), fields `http.request.method`, `url.path`, `http.route`,
/// `http.response.status_code`, `client.address` (from a `SocketAddr`
/// request extension, as the gateway's accept loop inserts), `otel.kind =
/// server`, `otel.status_code = error` on 5xx or service error. Parent: the
/// incoming `traceparent`, if valid.
///
/// The route comes from, in order: a [`RouteTemplate`] request extension, the
/// closure given to [`route_fn`](Self::route_fn), a [`RouteTemplate`]
/// response extension.
#[derive(Clone, Default)]
pub struct ServerTraceLayer {
    route_fn: Option<RouteFn>,
}

impl ServerTraceLayer {
    /// A layer that takes routes from extensions only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves the route template from method and URI (e.g. a router's
    /// `match`). Return `None` for unmatched requests; never return the raw
    /// path.
    pub fn route_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<RouteTemplate> + Send + Sync + 'static,
    {
        self.route_fn = Some(Arc::new(f));
        self
    }
}

impl fmt::Debug for ServerTraceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTraceLayer")
            .field("route_fn", &self.route_fn.is_some())
            .finish()
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;

    fn layer(&self, inner: S) -> ServerTrace<S> {
        ServerTrace {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`ServerTraceLayer`].
#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    layer: ServerTraceLayer,
}

impl<S> ServerTrace<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Creates the `SERVER` span for `req` (parent from its `traceparent`) without
/// the middleware, for servers that are not tower stacks.
pub fn server_span<B>(req: &Request<B>, route: Option<&str>) -> Span {
    let method = req.method().as_str();
    let name = match route {
        Some(r) => format!("{method} {r}"),
        None => method.to_owned(),
    };
    let span = tracing::info_span!(
        target: "nexus_telemetry::server",
        "http.server",
        otel.name = name.as_str(),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = req.uri().path(),
        http.route = route,
        http.response.status_code = Empty,
        client.address = Empty,
    );
    if let Some(peer) = req.extensions().get::<SocketAddr>() {
        span.record("client.address", tracing::field::display(peer.ip()));
    }
    set_parent_from_headers(&span, req.headers());
    span
}

impl<S, B, RB> Service<Request<B>> for ServerTrace<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ServerTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<RouteTemplate>()
            .cloned()
            .or_else(|| {
                self.layer
                    .route_fn
                    .as_ref()
                    .and_then(|f| f(req.method(), req.uri()))
            });
        let span = server_span(&req, route.as_ref().map(RouteTemplate::as_str));
        let method = route.is_none().then(|| req.method().clone());
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ServerTraceFuture {
            inner,
            span,
            method_if_unrouted: method,
        }
    }
}

pin_project! {
    /// Response future of [`ServerTrace`]: polls the inner future inside the
    /// span and records status on completion. The span ends when this future
    /// is dropped (response head ready; body streaming is not included).
    pub struct ServerTraceFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        method_if_unrouted: Option<Method>,
    }
}

impl<F: fmt::Debug> fmt::Debug for ServerTraceFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTraceFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ServerTraceFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let out = std::task::ready!(this.inner.poll(cx));
        outcome::record(this.span, Side::Server, &out);
        // A route the service found itself names the span now.
        if let (Ok(res), Some(method)) = (&out, this.method_if_unrouted.take())
            && let Some(route) = res.extensions().get::<RouteTemplate>()
        {
            this.span.record("http.route", route.as_str());
            this.span
                .record("otel.name", format!("{method} {}", route.as_str()).as_str());
        }
        Poll::Ready(out)
    }
}
