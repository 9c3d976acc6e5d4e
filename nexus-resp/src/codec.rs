//! A [`tokio_util::codec`] Decoder/Encoder pair over [`Frame`]s.

use bytes::BytesMut;

use crate::{Decoder, Error, Frame, Limits};

/// Error of [`RespCodec`]: the transport failed or the peer sent invalid RESP.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Reading or writing the underlying transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent invalid RESP or broke a limit.
    #[error("protocol error: {0}")]
    Protocol(#[from] Error),
}

/// RESP codec for `tokio_util::codec::{Framed, FramedRead, FramedWrite}`.
///
/// Decodes with a [`Decoder`] (accepting inline commands unless
/// [`RespCodec::inline`] turns them off) and encodes [`Frame`]s, owned or
/// borrowed.
///
/// ```
/// use bytes::BytesMut;
/// use nexus_resp::{codec::RespCodec, Frame};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = RespCodec::default();
/// let mut buf = BytesMut::new();
/// codec.encode(Frame::Simple("PONG".into()), &mut buf).unwrap();
/// assert_eq!(&buf[..], b"+PONG\r\n");
/// assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::Simple("PONG".into())));
/// ```
#[derive(Debug, Clone, Default)]
pub struct RespCodec {
    decoder: Decoder,
}

impl RespCodec {
    /// Creates a codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RespCodec {
            decoder: Decoder::new(limits),
        }
    }

    /// Sets whether inline commands are accepted (default: yes).
    #[must_use]
    pub fn inline(mut self, accept: bool) -> Self {
        self.decoder = self.decoder.inline(accept);
        self
    }
}

impl tokio_util::codec::Decoder for RespCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl tokio_util::codec::Encoder<Frame> for RespCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(dst);
        Ok(())
    }
}

impl tokio_util::codec::Encoder<&Frame> for RespCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.encode(dst);
        Ok(())
    }
}
