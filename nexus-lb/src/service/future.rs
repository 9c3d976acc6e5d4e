use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::{ServedBy, TrackedBody};
use crate::endpoint::InFlight;
use crate::error::{BoxError, LbError};

pin_project! {
    /// Response future of [`Lb`](super::Lb).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        guard: Option<InFlight>,
        error: Option<LbError>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, guard: InFlight) -> Self {
        Self {
            inner: Some(inner),
            guard: Some(guard),
            error: None,
        }
    }

    pub(crate) fn failed(error: LbError) -> Self {
        Self {
            inner: None,
            guard: None,
            error: Some(error),
        }
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<TrackedBody<RB>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            let error = this.error.take().unwrap_or(LbError::NoAvailableEndpoint);
            return Poll::Ready(Err(error.into()));
        };
        let result = ready!(inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(match (result, guard) {
            (Ok(resp), Some(guard)) => {
                guard.record_response();
                let mut resp = resp.map(|b| TrackedBody::new(b, None));
                resp.extensions_mut().insert(ServedBy(guard.endpoint()));
                Ok(resp.map(|b| b.with_guard(guard)))
            }
            (Ok(resp), None) => Ok(resp.map(|b| TrackedBody::new(b, None))),
            (Err(e), guard) => {
                let source = e.into();
                match guard {
                    Some(guard) => {
                        guard.record_failure();
                        let ep = guard.endpoint();
                        Err(LbError::Upstream {
                            endpoint: ep.url_arc(),
                            endpoint_id: ep.id(),
                            source,
                        }
                        .into())
                    }
                    None => Err(source),
                }
            }
        })
    }
}
