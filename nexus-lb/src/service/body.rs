use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::endpoint::InFlight;

pin_project! {
    /// A response body that keeps its request counted in flight until the
    /// body ends, fails or is dropped.
    #[derive(Debug)]
    pub struct TrackedBody<B> {
        #[pin]
        inner: B,
        guard: Option<InFlight>,
    }
}

impl<B> TrackedBody<B> {
    pub(crate) fn new(inner: B, guard: Option<InFlight>) -> Self {
        Self { inner, guard }
    }

    pub(crate) fn with_guard(mut self, guard: InFlight) -> Self {
        self.guard = Some(guard);
        self
    }

    /// The wrapped body (releasing the in-flight count).
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
