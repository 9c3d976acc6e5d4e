//! A tower layer that emits `gateway.request.completed` for every request.
//!
//! Latency is measured from the call until the inner service yields the
//! response head (body streaming is not included), with tokio's clock so
//! tests can pause it. The correlation id is read from a request header
//! (default `x-request-id`); the client id from a [`ClientId`] extension on
//! the response (set by an inner auth layer) or on the request, else
//! `anonymous`. An inner error is reported as status 500.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::header::HeaderName;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Emitter, Event, RequestCompleted};

/// The authenticated client, as a request or response extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(pub String);

/// Wraps services with [`CompletedService`].
#[derive(Debug, Clone)]
pub struct CompletedLayer {
    emitter: Emitter,
    correlation_header: HeaderName,
}

impl CompletedLayer {
    /// Emits through `emitter`, reading the correlation id from `x-request-id`.
    pub fn new(emitter: Emitter) -> Self {
        Self {
            emitter,
            correlation_header: HeaderName::from_static("x-request-id"),
        }
    }

    /// Reads the correlation id from `header` instead.
    pub fn correlation_header(mut self, header: HeaderName) -> Self {
        self.correlation_header = header;
        self
    }
}

impl<S> Layer<S> for CompletedLayer {
    type Service = CompletedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CompletedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Emits a `request.completed` event when the inner response is ready.
#[derive(Debug, Clone)]
pub struct CompletedService<S> {
    inner: S,
    layer: CompletedLayer,
}

impl<S> CompletedService<S> {
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

impl<S, B, RB> Service<Request<B>> for CompletedService<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = CompletedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let info = Pending {
            emitter: self.layer.emitter.clone(),
            started: Instant::now(),
            method: req.method().as_str().to_owned(),
            url: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
            correlation_id: req
                .headers()
                .get(&self.layer.correlation_header)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            client_id: req.extensions().get::<ClientId>().map(|c| c.0.clone()),
        };
        CompletedFuture {
            inner: self.inner.call(req),
            info: Some(info),
        }
    }
}

#[derive(Debug)]
struct Pending {
    emitter: Emitter,
    started: Instant,
    method: String,
    url: String,
    correlation_id: Option<String>,
    client_id: Option<String>,
}

pin_project! {
    /// Response future of [`CompletedService`].
    #[derive(Debug)]
    pub struct CompletedFuture<F> {
        #[pin]
        inner: F,
        info: Option<Pending>,
    }
}

impl<F, RB, E> Future for CompletedFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Some(p) = this.info.take() {
            let (status, response_client) = match &out {
                Ok(resp) => (
                    resp.status().as_u16(),
                    resp.extensions().get::<ClientId>().map(|c| c.0.clone()),
                ),
                Err(_) => (500, None),
            };
            let completed = RequestCompleted {
                method: p.method,
                url: p.url,
                status_code: status,
                latency_ms: p.started.elapsed().as_secs_f64() * 1_000.0,
                client_id: response_client
                    .or(p.client_id)
                    .unwrap_or_else(|| "anonymous".to_owned()),
            };
            p.emitter
                .emit(Event::request_completed(completed, p.correlation_id));
        }
        Poll::Ready(out)
    }
}
