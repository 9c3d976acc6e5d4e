//! [`JwtAuthLayer`]: verifies `Authorization: Bearer` on every non-public route.
//!
//! Public routes are decided on the normalised, classified route (the
//! [`RequestContext`] in the request extensions, put there by the entry layer); a
//! request without one is treated as protected. On success the [`Principal`] goes
//! into that context and into the request extensions as a value of its own (so
//! `req.extensions().get::<Principal>()`, axum's `Extension<Principal>`, and
//! [`principal`] all find it). When the inner service's response carries no
//! [`RequestContext`] (it did not hand the request's extensions back), the
//! `Principal` is put on the response too, for outer layers (the entry layer's
//! telemetry and `request.completed` client id).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{Request, StatusCode, header};
use tower_layer::Layer;
use tower_service::Service;

use super::jwt::{AuthError, JwtKeys, Principal};
use crate::layers::RequestContext;
use crate::response::{GatewayResponse, error};

/// Layer that verifies bearer tokens with a pinned algorithm.
#[derive(Debug, Clone)]
pub struct JwtAuthLayer {
    keys: Arc<JwtKeys>,
    context_only: bool,
}

impl JwtAuthLayer {
    /// New layer over shared keys.
    pub fn new(keys: Arc<JwtKeys>) -> Self {
        Self {
            keys,
            context_only: false,
        }
    }

    /// For an inner service that hands the request's extensions back on its
    /// response and reads the principal from the [`RequestContext`] (the
    /// gateway's router): behind the entry layer the principal then goes into
    /// the context only, with no `Principal` extension on the request or the
    /// response (one allocation less per authenticated request).
    pub(crate) fn context_only(mut self) -> Self {
        self.context_only = true;
        self
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;
    fn layer(&self, inner: S) -> JwtAuth<S> {
        JwtAuth {
            inner,
            keys: self.keys.clone(),
            context_only: self.context_only,
        }
    }
}

/// Service produced by [`JwtAuthLayer`].
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    keys: Arc<JwtKeys>,
    context_only: bool,
}

impl<S> JwtAuth<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn bearer<B>(req: &Request<B>) -> Result<&str, AuthError> {
    let v = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let v = v.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = v.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

/// The authenticated caller of a request that passed [`JwtAuth`]: the
/// [`RequestContext`]'s principal, or a [`Principal`] extension when the layer
/// runs without the entry layer in front.
pub fn principal<B>(req: &Request<B>) -> Option<&Principal> {
    let ext = req.extensions();
    match ext.get::<RequestContext>() {
        Some(c) => c.principal.as_ref(),
        None => ext.get::<Principal>(),
    }
}

/// The 401 for an authentication failure.
pub(crate) fn unauthorized(e: &AuthError) -> GatewayResponse {
    let mut res = error(StatusCode::UNAUTHORIZED, e.code(), &e.to_string());
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    res
}

pin_project_lite::pin_project! {
    /// Response future of [`JwtAuth`]: the inner response (with the verified
    /// [`Principal`] added when it carries no [`RequestContext`]), or the 401.
    pub struct JwtAuthFuture<F, E> {
        #[pin]
        inner: Either<F, Ready<Result<GatewayResponse, E>>>,
        // For the response; `None` on public routes, 401s and `context_only`.
        principal: Option<Principal>,
    }
}

impl<F, E> std::fmt::Debug for JwtAuthFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthFuture")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

impl<F, E> Future for JwtAuthFuture<F, E>
where
    F: Future<Output = Result<GatewayResponse, E>>,
{
    type Output = Result<GatewayResponse, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        if let Some(p) = this.principal.take()
            && res.extensions().get::<RequestContext>().is_none()
        {
            res.extensions_mut().insert(p);
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, B> Service<Request<B>> for JwtAuth<S>
where
    S: Service<Request<B>, Response = GatewayResponse>,
{
    type Response = GatewayResponse;
    type Error = S::Error;
    type Future = JwtAuthFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let public = req
            .extensions()
            .get::<RequestContext>()
            .is_some_and(|c| c.route.is_public());
        if public {
            return JwtAuthFuture {
                inner: Either::Left(self.inner.call(req)),
                principal: None,
            };
        }
        match bearer(&req).and_then(|t| self.keys.verify(t)) {
            Ok(p) => {
                let ext = req.extensions_mut();
                let principal = match ext.get_mut::<RequestContext>() {
                    Some(c) if self.context_only => {
                        c.principal = Some(p);
                        None
                    }
                    Some(c) => {
                        c.principal = Some(p.clone());
                        ext.insert(p.clone());
                        Some(p)
                    }
                    None => {
                        ext.insert(p.clone());
                        Some(p)
                    }
                };
                JwtAuthFuture {
                    inner: Either::Left(self.inner.call(req)),
                    principal,
                }
            }
            Err(e) => JwtAuthFuture {
                inner: Either::Right(ready(Ok(unauthorized(&e)))),
                principal: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn bearer_of(v: &[u8]) -> Result<String, AuthError> {
        let mut req = Request::new(());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            http::HeaderValue::from_bytes(v).unwrap(),
        );
        bearer(&req).map(str::to_owned)
    }

    #[test]
    fn bearer_token_is_taken_only_from_a_well_formed_header() {
        assert_eq!(bearer_of(b"Bearer abc.def").unwrap(), "abc.def");
        assert_eq!(bearer_of(b"bEaReR  abc ").unwrap(), "abc");
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer   ",
            b"Bearerx abc",
            b"Bearer\tabc",
            b" Bearer abc",
            b"Basic abc",
            b"Bear abc",
            b"Bearer ab\xc3\xa9",
        ] {
            assert_eq!(
                bearer_of(bad),
                Err(AuthError::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let req = Request::new(());
        assert_eq!(bearer(&req), Err(AuthError::Missing));
    }
}
