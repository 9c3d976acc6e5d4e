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

/// Reads a whole body of at most `limit` bytes (trailers are dropped).
///
/// Unlike `BodyExt::collect`, a body that arrives in one frame (the common
/// case for small upstream answers) is returned as that frame's `Bytes`, with
/// no buffer list and no copy; only a body in several frames is concatenated.
/// `Err(None)` means the limit was exceeded, `Err(Some(e))` that the body failed.
pub(crate) async fn read_bounded<B>(body: B, limit: usize) -> Result<Bytes, Option<BoxError>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match read_up_to(std::pin::pin!(body), limit).await {
        Ok(ReadUpTo::Whole(read)) => Ok(read),
        Ok(ReadUpTo::Over(..)) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// What [`read_up_to`] read.
pub(crate) enum ReadUpTo<B> {
    /// The whole body (at most the limit).
    Whole(Bytes),
    /// The body is longer than the limit: what was read so far (more than the
    /// limit, nothing dropped) and the unread rest.
    Over(Bytes, B),
}

/// Like [`read_bounded`], but a body over `limit` is not lost: the bytes read
/// so far and the rest of the body are handed back.
pub(crate) async fn read_up_to<B>(mut body: B, limit: usize) -> Result<ReadUpTo<B>, BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut first: Option<Bytes> = None;
    let mut more: Option<bytes::BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(Into::into)?.into_data() else {
            continue; // trailers
        };
        len += data.len();
        match (&mut first, &mut more) {
            (None, _) => first = Some(data),
            (Some(f), None) => {
                let mut buf = bytes::BytesMut::with_capacity(len.max(f.len() * 2).min(limit));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
        if len > limit {
            let read = match (more, first) {
                (Some(buf), _) => buf.freeze(),
                (None, f) => f.unwrap_or_default(),
            };
            return Ok(ReadUpTo::Over(read, body));
        }
    }
    Ok(ReadUpTo::Whole(match (more, first) {
        (Some(buf), _) => buf.freeze(),
        (None, Some(f)) => f,
        (None, None) => Bytes::new(),
    }))
}

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
    /// A streamed upstream body with an idle limit (the proxy's).
    Upstream(crate::proxy::UpstreamStream),
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
            Self::Upstream(s) => Pin::new(s).poll_frame(cx),
            Self::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(chunk) => chunk.is_none(),
            Self::Stream(inc) => inc.is_end_stream(),
            Self::Upstream(s) => s.is_end_stream(),
            Self::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(chunk) => SizeHint::with_exact(chunk.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Stream(inc) => inc.size_hint(),
            Self::Upstream(s) => s.size_hint(),
            Self::Boxed(b) => b.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frames(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn read_bounded_one_frame_several_frames_and_the_limit() {
        let one = read_bounded(frames(&["[1,2]"]), 5).await.unwrap();
        assert_eq!(one, "[1,2]");
        let several = read_bounded(frames(&["[1", ",", "2]"]), 5).await.unwrap();
        assert_eq!(several, "[1,2]");
        assert_eq!(read_bounded(frames(&[]), 5).await.unwrap(), "");
        assert!(matches!(
            read_bounded(frames(&["[1,", "2,3]"]), 5).await,
            Err(None)
        ));
        let failing = http_body_util::StreamBody::new(futures_util::stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err::<Frame<Bytes>, BoxError>("broken".into()),
        ]));
        assert!(matches!(read_bounded(failing, 5).await, Err(Some(_))));
    }
}
