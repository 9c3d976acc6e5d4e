use std::error::Error;
use std::fmt;
use std::sync::Arc;

use http::{Method, Request, Response};
use tower::retry::Policy;
use tower::retry::budget::{Budget, TpsBudget};

use super::classify::{CircuitOpenFn, classify_error};
use super::{ReplayBody, RetryConfig};
use crate::error::{BoxError, ConfigError, LbError};
use crate::rng::SplitMix;
use crate::{Exclude, ServedBy};

/// Request extension: this request may be retried even though its method
/// is not idempotent (the caller knows it is safe, e.g. it carries an
/// idempotency key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retryable;

/// Attempt number of the request template (private to the policy).
#[derive(Debug, Clone, Copy)]
struct Attempt(u32);

/// A [`tower::retry::Policy`] for HTTP requests through [`Lb`](crate::Lb):
/// see the [module docs](crate::retry).
///
/// Cheap to clone: all state is shared (budget, jitter source, config).
#[derive(Clone)]
pub struct RetryPolicy {
    shared: Arc<Shared>,
}

struct Shared {
    config: RetryConfig,
    budget: TpsBudget,
    rng: SplitMix,
    circuit_open: Option<Arc<CircuitOpenFn>>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl RetryPolicy {
    /// Validates `config` and builds the policy (and its budget).
    pub fn new(config: RetryConfig) -> Result<Self, ConfigError> {
        Self::build(config, None)
    }

    fn build(
        config: RetryConfig,
        circuit_open: Option<Arc<CircuitOpenFn>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        // Ranges checked by `validate`, so TpsBudget's assertions hold.
        let budget = TpsBudget::new(
            config.budget_ttl,
            config.budget_min_per_sec,
            config.budget_ratio,
        );
        let rng = SplitMix::new(config.seed.unwrap_or_else(SplitMix::entropy));
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                budget,
                rng,
                circuit_open,
            }),
        })
    }

    /// Also retries errors for which `is_open` is true anywhere in the
    /// source chain: the circuit breaker's fail-fast error, e.g.
    /// `|e| e.is::<nexus_breaker::CircuitOpen>()`. Resets the budget.
    pub fn circuit_open_if<F>(self, is_open: F) -> Self
    where
        F: Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'static,
    {
        let config = self.shared.config.clone();
        Self::build(config, Some(Arc::new(is_open)))
            .unwrap_or_else(|_| unreachable!("config was validated"))
    }

    /// The configuration.
    pub fn config(&self) -> &RetryConfig {
        &self.shared.config
    }

    /// A `tower::retry::RetryLayer` with this policy.
    pub fn layer(self) -> tower::retry::RetryLayer<Self> {
        tower::retry::RetryLayer::new(self)
    }

    fn may_retry<B>(req: &Request<B>) -> bool {
        idempotent(req.method()) || req.extensions().get::<Retryable>().is_some()
    }

    /// Decides whether `result` warrants another attempt; returns the
    /// endpoint to avoid (if known).
    fn failed_endpoint<RB>(&self, result: &Result<Response<RB>, BoxError>) -> Option<Option<u64>> {
        match result {
            Ok(resp) => self
                .shared
                .config
                .statuses
                .contains(&resp.status())
                .then(|| resp.extensions().get::<ServedBy>().map(|s| s.0.id())),
            Err(e) => {
                let circuit = self.shared.circuit_open.as_deref();
                classify_error(e, circuit)?;
                Some(match e.downcast_ref::<LbError>() {
                    Some(LbError::Upstream { endpoint_id, .. }) => Some(*endpoint_id),
                    _ => None,
                })
            }
        }
    }
}

impl<B, RB> Policy<Request<B>, Response<RB>, BoxError> for RetryPolicy
where
    B: ReplayBody,
{
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<RB>, BoxError>,
    ) -> Option<Self::Future> {
        let attempt = req.extensions().get::<Attempt>().map_or(1, |a| a.0);
        if attempt >= self.shared.config.max_attempts.get() {
            return None;
        }
        let failed = self.failed_endpoint(result)?;
        if !self.shared.budget.withdraw() {
            tracing::debug!(attempt, "retry budget exhausted; not retrying");
            return None;
        }
        let ext = req.extensions_mut();
        ext.insert(Attempt(attempt + 1));
        if let Some(id) = failed {
            let mut exclude = ext.get::<Exclude>().copied().unwrap_or_default();
            exclude.insert(id);
            ext.insert(exclude);
        }
        let delay = self
            .shared
            .config
            .backoff(attempt, self.shared.rng.next_f64());
        tracing::debug!(attempt, ?delay, "retrying on another endpoint");
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if req.extensions().get::<Attempt>().is_none() {
            // First attempt of a client request: it earns retry budget
            // whether or not it can itself be retried.
            self.shared.budget.deposit();
        }
        if !Self::may_retry(req) {
            return None;
        }
        let mut clone = Request::new(req.body().try_replay()?);
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    use http_body_util::Full;

    type Req = Request<Full<bytes::Bytes>>;

    fn clone_req(p: &mut RetryPolicy, req: &Req) -> Option<Req> {
        <RetryPolicy as Policy<Req, Response<()>, BoxError>>::clone_request(p, req)
    }

    fn policy(cfg: RetryConfig) -> RetryPolicy {
        RetryPolicy::new(cfg).unwrap()
    }

    fn status(code: u16) -> Result<Response<()>, BoxError> {
        let mut r = Response::new(());
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap();
        Ok(r)
    }

    #[test]
    fn only_idempotent_or_marked_requests_with_replayable_bodies_are_cloned() {
        let mut p = policy(RetryConfig::default());
        let get = Request::get("/x")
            .body(Full::new(bytes::Bytes::new()))
            .unwrap();
        assert!(clone_req(&mut p, &get).is_some());
        let post = Request::post("/x")
            .body(Full::new(bytes::Bytes::from("a")))
            .unwrap();
        assert!(clone_req(&mut p, &post).is_none());
        let mut marked = Request::post("/x")
            .body(Full::new(bytes::Bytes::from("a")))
            .unwrap();
        marked.extensions_mut().insert(Retryable);
        let c = clone_req(&mut p, &marked).unwrap();
        assert_eq!(c.method(), Method::POST);
    }

    #[tokio::test(start_paused = true)]
    async fn statuses_attempts_and_backoff() {
        let mut p = policy(RetryConfig {
            seed: Some(1),
            jitter: 0.0,
            ..RetryConfig::default()
        });
        let mut req = Request::get("/").body(()).unwrap();
        // 200 is not retried.
        assert!(p.retry(&mut req, &mut status(200)).is_none());
        // 503 is, after the base delay.
        let start = tokio::time::Instant::now();
        p.retry(&mut req, &mut status(503)).unwrap().await;
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        // Second retry doubles the delay.
        let start = tokio::time::Instant::now();
        p.retry(&mut req, &mut status(502)).unwrap().await;
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        // Third attempt was the last of 3.
        assert!(p.retry(&mut req, &mut status(503)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn jittered_backoff_stays_within_bounds() {
        let p = policy(RetryConfig {
            seed: Some(9),
            ..RetryConfig::default()
        });
        for _ in 0..100 {
            let mut p = p.clone();
            let mut req = Request::get("/").body(()).unwrap();
            let start = tokio::time::Instant::now();
            p.retry(&mut req, &mut status(503)).unwrap().await;
            let d = start.elapsed();
            assert!(
                d >= Duration::from_millis(100) && d <= Duration::from_millis(200),
                "{d:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_in_an_outage() {
        let mut p = policy(RetryConfig {
            budget_min_per_sec: 1,
            budget_ratio: 0.0,
            budget_ttl: Duration::from_secs(1),
            ..RetryConfig::default()
        });
        // Floor of 1 retry/s over a 1 s window: the second retry is refused.
        let mut allowed = 0;
        for _ in 0..10 {
            let mut req = Request::get("/").body(()).unwrap();
            if p.retry(&mut req, &mut status(503)).is_some() {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 1);
    }

    #[test]
    fn failed_endpoint_is_excluded_on_the_next_attempt() {
        let mut p = policy(RetryConfig::default());
        let mut req = Request::get("/").body(()).unwrap();
        let mut err: Result<Response<()>, BoxError> = Err(Box::new(LbError::Upstream {
            endpoint: Arc::from("http://a:1"),
            endpoint_id: 42,
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _g = rt.enter();
        assert!(p.retry(&mut req, &mut err).is_some());
        assert!(req.extensions().get::<Exclude>().unwrap().contains(42));
        // An unknown error is not retried.
        let mut other: Result<Response<()>, BoxError> = Err("boom".into());
        assert!(p.retry(&mut req, &mut other).is_none());
    }
}
