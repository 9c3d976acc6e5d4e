//! The response body type of the gateway: a buffered chunk, a streamed upstream
//! body, or any boxed body (for responses produced by foreign layers).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;

/// Boxed error used across the gateway's service stack.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Body of every response the gateway produces.
///
/// Upstream bodies are streamed frame by frame (never buffered) through
/// [`GatewayBody::Stream`]; gateway-made responses are a single [`Bytes`].
#[derive(Debug)]
pub enum GatewayBody {
    /// A complete body in one chunk (`None` once sent).
    Full(Option<Bytes>),
    /// A streamed upstream body.
    Stream(hyper::body::Incoming),
    /// Any other body.
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl GatewayBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::Full(None)
    }

    /// Boxes any body with `Bytes` frames.
    pub fn boxed<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        Self::Boxed(body.map_err(Into::into).boxed_unsync())
    }
}

impl Default for GatewayBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for GatewayBody {
    fn from(b: Bytes) -> Self {
        if b.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(b))
        }
    }
}

impl From<String> for GatewayBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for GatewayBody {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // Every variant is `Unpin` (`Incoming` and the boxed body both are).
        match self.get_mut() {
            Self::Full(chunk) => Poll::Ready(chunk.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(inc) => Pin::new(inc).poll_frame(cx).map_err(Into::into),
            Self::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(chunk) => chunk.is_none(),
            Self::Stream(inc) => inc.is_end_stream(),
            Self::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(inc) => inc.size_hint(),
            Self::Boxed(b) => b.size_hint(),
        }
    }
}
