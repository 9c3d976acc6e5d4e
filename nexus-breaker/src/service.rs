//! `CircuitBreaker<S>`: the middleware service and its response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower_service::Service;

use crate::error::BoxError;
use crate::{Breaker, Classify, Error, Outcome, Permit};

/// Middleware that fails fast while its breaker is open and feeds it the
/// outcome of every call; built by [`BreakerLayer`](crate::BreakerLayer).
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S, C> {
    inner: S,
    breaker: Breaker,
    classifier: C,
}

impl<S, C> CircuitBreaker<S, C> {
    /// Wraps `inner`.
    pub fn new(inner: S, breaker: Breaker, classifier: C) -> Self {
        Self {
            inner,
            breaker,
            classifier,
        }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| Error::Inner(e.into()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let permit = match self.breaker.acquire() {
            Ok(p) => p,
            Err(e) => {
                return ResponseFuture {
                    kind: Kind::Rejected { error: Some(e) },
                };
            }
        };
        let timeout = self.breaker.config().call_timeout;
        ResponseFuture {
            kind: Kind::Running {
                fut: self.inner.call(req),
                sleep: timeout.map(tokio::time::sleep),
                timeout: timeout.unwrap_or_default(),
                permit: Some(permit),
                classifier: self.classifier.clone(),
            },
        }
    }
}

pin_project! {
    /// Response future of [`CircuitBreaker`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Rejected { error: Option<Error> },
        Running {
            #[pin]
            fut: F,
            #[pin]
            sleep: Option<Sleep>,
            timeout: Duration,
            permit: Option<Permit>,
            classifier: C,
        },
    }
}

impl<F, C> std::fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Running {
                fut,
                sleep,
                timeout,
                permit,
                classifier,
            } => {
                if let Poll::Ready(result) = fut.poll(cx) {
                    let outcome = classifier.classify(result.as_ref());
                    if let Some(p) = permit.take() {
                        p.record(outcome);
                    }
                    return Poll::Ready(result.map_err(|e| Error::Inner(e.into())));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                    let endpoint = match permit.take() {
                        Some(p) => {
                            let endpoint = p.endpoint();
                            p.record(Outcome::Failure);
                            endpoint
                        }
                        None => "unknown".into(),
                    };
                    return Poll::Ready(Err(Error::Timeout {
                        endpoint,
                        after: *timeout,
                    }));
                }
                Poll::Pending
            }
        }
    }
}
