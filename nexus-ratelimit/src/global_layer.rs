//! `GlobalRateLimitLayer`: the layer over a [`RedisLimiter`] (feature `redis`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::global::{RedisKey, RedisLimiter};
use crate::headers::PolicyHeaders;
use crate::{ConfigError, KeyExtractor, MissingKey, OnReject, Rejection};

/// Like [`RateLimitLayer`](crate::RateLimitLayer), with buckets in Redis so
/// the limit holds across every process sharing that Redis. Same responses,
/// headers and hook. Its future is boxed: each check is a network round trip,
/// which dwarfs an allocation.
pub struct GlobalRateLimitLayer<E: KeyExtractor> {
    shared: Arc<Shared<E>>,
}

struct Shared<E: KeyExtractor> {
    limiter: RedisLimiter,
    extractor: E,
    hook: Option<Box<dyn OnReject<E::Key>>>,
    headers: PolicyHeaders,
    missing: MissingKey,
}

impl<E: KeyExtractor> GlobalRateLimitLayer<E>
where
    E::Key: RedisKey,
{
    /// Limits by `extractor`'s key through `limiter`; keyless requests share
    /// one bucket unless `missing` is [`MissingKey::Allow`].
    pub fn new(
        limiter: RedisLimiter,
        extractor: E,
        policy_name: &str,
        missing: MissingKey,
        hook: Option<Box<dyn OnReject<E::Key>>>,
    ) -> Result<Self, ConfigError> {
        let headers = PolicyHeaders::new(policy_name, &limiter.quota())?;
        Ok(Self {
            shared: Arc::new(Shared {
                limiter,
                extractor,
                hook,
                headers,
                missing,
            }),
        })
    }
}

impl<E: KeyExtractor> Clone for GlobalRateLimitLayer<E> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: KeyExtractor + fmt::Debug> fmt::Debug for GlobalRateLimitLayer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalRateLimitLayer")
            .field("limiter", &self.shared.limiter)
            .field("extractor", &self.shared.extractor)
            .finish_non_exhaustive()
    }
}

impl<S, E: KeyExtractor> Layer<S> for GlobalRateLimitLayer<E> {
    type Service = GlobalRateLimit<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        GlobalRateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware built by [`GlobalRateLimitLayer`].
pub struct GlobalRateLimit<S, E: KeyExtractor> {
    inner: S,
    shared: Arc<Shared<E>>,
}

impl<S: Clone, E: KeyExtractor> Clone for GlobalRateLimit<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, E: KeyExtractor> fmt::Debug for GlobalRateLimit<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalRateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Boxed response future of [`GlobalRateLimit`].
pub type GlobalResponseFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, E, ReqBody, ResBody> Service<Request<ReqBody>> for GlobalRateLimit<S, E>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    E: KeyExtractor,
    E::Key: RedisKey,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GlobalResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Take the service that was polled ready; leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let key = shared.extractor.extract(&req);
            let mut raw = Vec::with_capacity(48);
            match &key {
                Some(k) => k.write_key(&mut raw),
                None if shared.missing == MissingKey::Allow => return inner.call(req).await,
                None => raw.extend_from_slice(b"\x00shared"),
            }
            let (decision, _source) = shared.limiter.check(&raw).await;
            match decision {
                Ok(allowed) => {
                    let mut res = inner.call(req).await?;
                    shared
                        .headers
                        .values(allowed.remaining(), allowed.reset_after())
                        .apply(res.headers_mut());
                    Ok(res)
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
                    Ok(shared
                        .headers
                        .rejection(denied.retry_after(), denied.reset_after()))
                }
            }
        })
    }
}
