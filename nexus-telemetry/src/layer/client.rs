//! Client span per outbound attempt.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::field::Empty;

use super::outcome::{self, Side};
use crate::propagation::inject_span;

/// How many times this request was sent before (0 for the first attempt).
/// Insert it as a request extension from a retry policy to get
/// `http.request.resend_count` on each attempt's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResendCount(pub u32);

/// Wraps an HTTP client service so every call runs in a `CLIENT` span (child
/// of the current span) whose `traceparent` is injected into the request.
///
/// Span: name `upstream.proxy` (the seed's; see [`name`](Self::name)),
/// fields `http.request.method`, `server.address`, `server.port`,
/// `http.response.status_code`, `http.request.resend_count`, `otel.kind =
/// client`, `otel.status_code = error` on 4xx/5xx or transport error.
/// `server.address` comes from the request URI authority, so the client must
/// be given absolute URIs (as hyper's legacy client requires anyway).
#[derive(Debug, Clone)]
pub struct ClientTraceLayer {
    name: Cow<'static, str>,
}

impl Default for ClientTraceLayer {
    fn default() -> Self {
        Self {
            name: Cow::Borrowed("upstream.proxy"),
        }
    }
}

impl ClientTraceLayer {
    /// Spans named `upstream.proxy`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the span name.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;

    fn layer(&self, inner: S) -> ClientTrace<S> {
        ClientTrace {
            inner,
            name: self.name.clone(),
        }
    }
}

/// The service built by [`ClientTraceLayer`].
#[derive(Debug, Clone)]
pub struct ClientTrace<S> {
    inner: S,
    name: Cow<'static, str>,
}

impl<S> ClientTrace<S> {
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

/// Creates a `CLIENT` span for `req` (child of the current span) and injects
/// its `traceparent` into `req`'s headers, for callers that are not tower
/// stacks. Record the outcome with `span.record("http.response.status_code", …)`.
pub fn client_span<B>(name: &str, req: &mut Request<B>) -> Span {
    let uri = req.uri();
    let span = tracing::info_span!(
        target: "nexus_telemetry::client",
        "http.client",
        otel.name = name,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = req.method().as_str(),
        server.address = uri.host(),
        server.port = uri.port_u16(),
        http.response.status_code = Empty,
        http.request.resend_count = Empty,
    );
    if let Some(ResendCount(n)) = req.extensions().get::<ResendCount>()
        && *n > 0
    {
        span.record("http.request.resend_count", n);
    }
    inject_span(&span, req.headers_mut());
    span
}

impl<S, B, RB> Service<Request<B>> for ClientTrace<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ClientTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let span = client_span(&self.name, &mut req);
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ClientTraceFuture { inner, span }
    }
}

pin_project! {
    /// Response future of [`ClientTrace`]; the span ends when it is dropped.
    pub struct ClientTraceFuture<F> {
        #[pin]
        inner: F,
        span: Span,
    }
}

impl<F: fmt::Debug> fmt::Debug for ClientTraceFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTraceFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, RB, E> Future for ClientTraceFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let out = std::task::ready!(this.inner.poll(cx));
        outcome::record(this.span, Side::Client, &out);
        Poll::Ready(out)
    }
}
