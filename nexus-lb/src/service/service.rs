use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower_service::Service;

use super::{ResponseFuture, TrackedBody};
use crate::error::{BoxError, LbError};
use crate::{Balancer, EndpointHandle, Exclude};

/// Routes each request to an endpoint picked by a [`Balancer`].
///
/// For every call it picks an endpoint (avoiding any [`Exclude`] found in the
/// request's extensions — the retry policy puts one there), rewrites the URI's
/// scheme and authority to the endpoint's (path and query are kept; headers,
/// including `Host`, are left to the caller), counts the request in flight and
/// calls the inner service. The in-flight count is released when the response
/// body ends, fails or is dropped (or when the call fails); the latency fed to
/// the peak EWMA is measured to the response head.
///
/// Responses carry a [`ServedBy`] extension. Errors are [`LbError`]s, boxed:
/// [`LbError::NoAvailableEndpoint`] when nothing is in rotation,
/// [`LbError::Upstream`] wrapping the inner service's error.
#[derive(Debug, Clone)]
pub struct Lb<S> {
    inner: S,
    balancer: Balancer,
}

/// Response extension naming the endpoint that served the request.
#[derive(Debug, Clone)]
pub struct ServedBy(pub EndpointHandle);

impl<S> Lb<S> {
    /// Routes requests for `inner` through `balancer`.
    pub fn new(inner: S, balancer: Balancer) -> Self {
        Self { inner, balancer }
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

fn route<B>(req: &mut Request<B>, ep: &EndpointHandle) -> Result<(), http::Error> {
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.scheme = Some(ep.scheme().clone());
    parts.authority = Some(ep.authority().clone());
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *req.uri_mut() = Uri::from_parts(parts)?;
    Ok(())
}

impl<S, B, RB> Service<Request<B>> for Lb<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<TrackedBody<RB>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let exclude = req
            .extensions()
            .get::<Exclude>()
            .copied()
            .unwrap_or_default();
        let Some(ep) = self.balancer.pick_excluding(&exclude) else {
            return ResponseFuture::failed(LbError::NoAvailableEndpoint);
        };
        if let Err(source) = route(&mut req, &ep) {
            return ResponseFuture::failed(LbError::InvalidUri {
                endpoint: ep.url_arc(),
                source,
            });
        }
        let guard = ep.start();
        ResponseFuture::new(self.inner.call(req), guard)
    }
}
