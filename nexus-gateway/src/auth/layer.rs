//! [`JwtAuthLayer`]: verifies `Authorization: Bearer` on every non-public route.
//!
//! Public routes are decided on the normalised, classified route (the
//! [`RequestContext`] in the request extensions, put there by the entry layer); a
//! request without one is treated as protected. On success the [`Principal`] goes
//! into that context for later layers (see [`principal`]); without a context (the
//! layer used on its own) it is inserted as an extension of its own.

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
}

impl JwtAuthLayer {
    /// New layer over shared keys.
    pub fn new(keys: Arc<JwtKeys>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;
    fn layer(&self, inner: S) -> JwtAuth<S> {
        JwtAuth {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// Service produced by [`JwtAuthLayer`].
#[derive(Debug, Clone)]
pub struct JwtAuth<S> {
    inner: S,
    keys: Arc<JwtKeys>,
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

impl<S, B> Service<Request<B>> for JwtAuth<S>
where
    S: Service<Request<B>, Response = GatewayResponse>,
    S::Future: Send + 'static,
{
    type Response = GatewayResponse;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<GatewayResponse, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let public = req
            .extensions()
            .get::<RequestContext>()
            .is_some_and(|c| c.route.is_public());
        if public {
            return Either::Left(self.inner.call(req));
        }
        match bearer(&req).and_then(|t| self.keys.verify(t)) {
            Ok(p) => {
                match req.extensions_mut().get_mut::<RequestContext>() {
                    Some(c) => c.principal = Some(p),
                    None => {
                        req.extensions_mut().insert(p);
                    }
                }
                Either::Left(self.inner.call(req))
            }
            Err(e) => Either::Right(ready(Ok(unauthorized(&e)))),
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
