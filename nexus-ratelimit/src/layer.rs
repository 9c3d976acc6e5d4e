//! `RateLimitLayer`: the tower face of the limiter.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::clock::{Clock, TokioClock};
use crate::headers::PolicyHeaders;
use crate::{ConfigError, KeyExtractor, KeyedLimiter, OnReject, RateLimit};

/// What to do with a request whose extractor found no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingKey {
    /// Charge it to the limiter's one shared bucket (the default: keyless
    /// traffic is limited as a whole).
    #[default]
    Shared,
    /// Let it through unlimited (for when another layer rejects such requests).
    Allow,
}

/// Applies a [`KeyedLimiter`] to every request: over-quota requests get a
/// `429 Too Many Requests` with `Retry-After`, `RateLimit-Policy`,
/// `RateLimit` and a JSON body, and never reach the inner service.
///
/// Cheap to clone (one `Arc`); all services it builds share one limiter.
pub struct RateLimitLayer<E: KeyExtractor, C = TokioClock> {
    shared: Arc<Shared<E, C>>,
}

pub(crate) struct Shared<E: KeyExtractor, C> {
    pub(crate) limiter: KeyedLimiter<E::Key, C>,
    pub(crate) extractor: E,
    pub(crate) hook: Option<Box<dyn OnReject<E::Key>>>,
    pub(crate) headers: PolicyHeaders,
    pub(crate) missing: MissingKey,
    pub(crate) headers_on_success: bool,
}

impl<E: KeyExtractor, C: Clock> RateLimitLayer<E, C> {
    /// Limits requests by `extractor`'s key with `limiter`, policy name
    /// `"default"`, quota headers on every response, keyless requests charged
    /// to the shared bucket, no hook.
    pub fn new(limiter: KeyedLimiter<E::Key, C>, extractor: E) -> Self {
        Self::builder(limiter, extractor).finish()
    }

    /// A builder for the optional settings.
    pub fn builder(limiter: KeyedLimiter<E::Key, C>, extractor: E) -> RateLimitLayerBuilder<E, C> {
        RateLimitLayerBuilder {
            limiter,
            extractor,
            hook: None,
            policy_name: "default".into(),
            missing: MissingKey::default(),
            headers_on_success: true,
        }
    }

    /// The limiter (e.g. to spawn its housekeeper or read its size).
    pub fn limiter(&self) -> &KeyedLimiter<E::Key, C> {
        &self.shared.limiter
    }
}

impl<E: KeyExtractor, C> Clone for RateLimitLayer<E, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<E: KeyExtractor + fmt::Debug, C> fmt::Debug for RateLimitLayer<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.shared.limiter)
            .field("extractor", &self.shared.extractor)
            .field("missing", &self.shared.missing)
            .field("hook", &self.shared.hook.is_some())
            .finish()
    }
}

impl<S, E: KeyExtractor, C> Layer<S> for RateLimitLayer<E, C> {
    type Service = RateLimit<S, E, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_shared(inner, Arc::clone(&self.shared))
    }
}

/// Builds a [`RateLimitLayer`].
pub struct RateLimitLayerBuilder<E: KeyExtractor, C> {
    limiter: KeyedLimiter<E::Key, C>,
    extractor: E,
    hook: Option<Box<dyn OnReject<E::Key>>>,
    policy_name: String,
    missing: MissingKey,
    headers_on_success: bool,
}

impl<E: KeyExtractor, C: Clock> RateLimitLayerBuilder<E, C> {
    /// Runs `hook` on every rejection (metrics, events).
    pub fn on_reject(mut self, hook: impl OnReject<E::Key>) -> Self {
        self.hook = Some(Box::new(hook));
        self
    }

    /// Names the policy in the `RateLimit*` headers (a token of
    /// `[A-Za-z0-9_.-]`, at most 64 characters, starting with a letter).
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        self.policy_name = name.into();
        self
    }

    /// What to do with requests that have no key.
    pub fn missing_key(mut self, missing: MissingKey) -> Self {
        self.missing = missing;
        self
    }

    /// Whether admitted responses carry `RateLimit-Policy`/`RateLimit`
    /// (default true).
    pub fn headers_on_success(mut self, on: bool) -> Self {
        self.headers_on_success = on;
        self
    }

    /// The layer, or an error naming an invalid setting.
    pub fn build(self) -> Result<RateLimitLayer<E, C>, ConfigError> {
        let headers = PolicyHeaders::new(&self.policy_name, &self.limiter.quota())?;
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                limiter: self.limiter,
                extractor: self.extractor,
                hook: self.hook,
                headers,
                missing: self.missing,
                headers_on_success: self.headers_on_success,
            }),
        })
    }

    /// Infallible build for the default policy name.
    fn finish(self) -> RateLimitLayer<E, C> {
        let headers = PolicyHeaders::default_name(&self.limiter.quota());
        RateLimitLayer {
            shared: Arc::new(Shared {
                limiter: self.limiter,
                extractor: self.extractor,
                hook: self.hook,
                headers,
                missing: self.missing,
                headers_on_success: self.headers_on_success,
            }),
        }
    }
}

impl<E: KeyExtractor + fmt::Debug, C> fmt::Debug for RateLimitLayerBuilder<E, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("extractor", &self.extractor)
            .field("policy_name", &self.policy_name)
            .finish_non_exhaustive()
    }
}
