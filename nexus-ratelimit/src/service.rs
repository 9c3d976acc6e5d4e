//! `RateLimit<S>`: the middleware service and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::clock::{Clock, TokioClock};
use crate::headers::QuotaHeaders;
use crate::layer::Shared;
use crate::{KeyExtractor, MissingKey, Rejection};

/// Middleware that rate-limits requests; built by
/// [`RateLimitLayer`](crate::RateLimitLayer).
pub struct RateLimit<S, E: KeyExtractor, C = TokioClock> {
    inner: S,
    shared: Arc<Shared<E, C>>,
}

impl<S, E: KeyExtractor, C> RateLimit<S, E, C> {
    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<E, C>>) -> Self {
        Self { inner, shared }
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

impl<S: Clone, E: KeyExtractor, C> Clone for RateLimit<S, E, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, E: KeyExtractor, C> fmt::Debug for RateLimit<S, E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E, C, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, E, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    E: KeyExtractor,
    C: Clock,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let key = shared.extractor.extract(&req);
        let decision = match &key {
            Some(key) => shared.limiter.check(key),
            None => match shared.missing {
                MissingKey::Allow => return ResponseFuture::called(self.inner.call(req), None),
                MissingKey::Shared => shared.limiter.check_shared(),
            },
        };
        match decision {
            Ok(allowed) => {
                let headers = shared.headers_on_success.then(|| {
                    shared
                        .headers
                        .values(allowed.remaining(), allowed.reset_after())
                });
                ResponseFuture::called(self.inner.call(req), headers)
            }
            Err(denied) => {
                if let Some(hook) = &shared.hook {
                    hook.on_reject(&Rejection {
                        key: key.as_ref(),
                        method: req.method(),
                        uri: req.uri(),
                        headers: req.headers(),
                        extensions: req.extensions(),
                        retry_after: denied.retry_after(),
                    });
                }
                tracing::debug!(
                    method = %req.method(),
                    uri = %req.uri(),
                    retry_after_ms = denied.retry_after().as_millis() as u64,
                    "rate limited"
                );
                let res = shared
                    .headers
                    .rejection(denied.retry_after(), denied.reset_after());
                ResponseFuture {
                    state: State::Rejected { res: Some(res) },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`RateLimit`]: the inner service's response with
    /// quota headers added, or the ready 429.
    pub struct ResponseFuture<F, B> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Called { #[pin] fut: F, headers: Option<QuotaHeaders> },
        Rejected { res: Option<Response<B>> },
    }
}

impl<F, B> ResponseFuture<F, B> {
    fn called(fut: F, headers: Option<QuotaHeaders>) -> Self {
        Self {
            state: State::Called { fut, headers },
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, Err> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, Err>>,
{
    type Output = Result<Response<B>, Err>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { fut, headers } => {
                let mut res = std::task::ready!(fut.poll(cx))?;
                if let Some(h) = headers.take() {
                    h.apply(res.headers_mut());
                }
                Poll::Ready(Ok(res))
            }
            StateProj::Rejected { res } => match res.take() {
                Some(res) => Poll::Ready(Ok(res)),
                None => panic!("ResponseFuture polled after completion"),
            },
        }
    }
}
