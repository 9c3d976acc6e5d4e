//! Streaming decoding into [`Frame`]s.

use bytes::{Buf, Bytes, BytesMut};

use crate::build::Build;
use crate::index::{Indexer, Node};
use crate::{Error, Frame, FrameView, Limits, Scanner};

/// Streaming decoder from a [`BytesMut`] read buffer.
///
/// Each call to [`Decoder::decode`] returns `Ok(None)` until the first frame
/// in the buffer is complete, then removes exactly that frame from the buffer
/// and returns it. Payloads are [`Bytes`] slices of the removed bytes.
///
/// Framing is done by a resumable [`Scanner`], so a large frame arriving in
/// many chunks is scanned once overall; the frame is then built in one pass
/// over the complete bytes. Vectors are sized from counts that the received
/// bytes have already proven, never from a count the peer merely announced.
///
/// Inline commands are accepted at the top level and decode as
/// [`Frame::Array`] of [`Frame::Bulk`]; disable them with
/// [`Decoder::inline`] when decoding replies.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    scanner: Scanner,
    /// The element index of the last [`FrameView`], reused between calls.
    /// Bound: one node per element of the largest frame decoded into a view
    /// (at most a third of its length); see [`Decoder::decode_view`].
    nodes: Vec<Node>,
}

impl Decoder {
    /// Creates a decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            scanner: Scanner::new(limits),
            nodes: Vec::new(),
        }
    }

    /// Sets whether inline commands are accepted (default: yes).
    #[must_use]
    pub fn inline(mut self, accept: bool) -> Self {
        self.scanner = self.scanner.inline(accept);
        self
    }

    /// Forgets partial progress (call it when the buffer is discarded).
    pub fn reset(&mut self) {
        self.scanner.reset();
    }

    /// Decodes the first frame of `buf`, removing its bytes; `Ok(None)` if it
    /// has not fully arrived. Nothing else is removed, except empty inline
    /// lines (`\r\n` where a command would start, with inline commands
    /// enabled), which are skipped as Redis does.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        loop {
            let Some(len) = self.scanner.scan(buf)? else {
                return Ok(None);
            };
            let bytes = buf.split_to(len).freeze();
            if let Some(frame) = self.build(&bytes, len)? {
                return Ok(Some(frame));
            }
        }
    }

    /// Like [`Decoder::decode`], for input that is already a [`Bytes`]
    /// (for example a message received whole): removes the first frame from
    /// the front of `buf`, which then still holds the rest.
    pub fn decode_bytes(&mut self, buf: &mut Bytes) -> Result<Option<Frame>, Error> {
        loop {
            // Fast path: when no frame is in progress, build straight from
            // the buffer in one pass. If the frame is incomplete, fall back
            // to the resumable scanner, which then keeps the progress (so a
            // frame that arrives in chunks costs one failed attempt, then
            // O(new bytes) per call).
            if let (false, Some(&ty)) = (self.scanner.is_partial(), buf.first())
                && crate::is_type_byte(ty)
            {
                let mut build = Build {
                    src: buf,
                    buf: &buf[..],
                    pos: 0,
                    limits: *self.scanner.limits(),
                };
                match build.element(ty, self.scanner.limits().depth()) {
                    Ok(frame) => {
                        let len = build.pos;
                        buf.advance(len);
                        return Ok(Some(frame));
                    }
                    // Ran out of bytes.
                    Err(Error::NotOneFrame) => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(len) = self.scanner.scan(buf)? else {
                return Ok(None);
            };
            // Payloads are sliced from `buf` itself, which then skips the
            // frame: no intermediate handle, one reference count fewer.
            let frame = self.build(buf, len)?;
            buf.advance(len);
            if let Some(frame) = frame {
                return Ok(Some(frame));
            }
            // An empty inline line was skipped: start afresh on the next frame.
        }
    }

    /// Like [`Decoder::decode`], but returns a [`FrameView`]: the frame's
    /// bytes plus an index of its elements, instead of a tree of [`Frame`]s
    /// with a [`Bytes`] handle per element. Input is validated exactly as
    /// [`Decoder::decode_bytes`] does, with the same errors.
    ///
    /// The view borrows the decoder's element index, which is reused from
    /// call to call: after it has grown to the largest frame seen, decoding
    /// a view allocates nothing, and costs one reference count for the
    /// frame's bytes, whatever the number of elements. The index keeps that
    /// capacity (24 bytes per element of the largest frame; at
    /// most 8 bytes per input byte of that frame) until the decoder is dropped
    /// or [`Decoder::shrink`] is called.
    pub fn decode_view(&mut self, buf: &mut BytesMut) -> Result<Option<FrameView<'_>>, Error> {
        loop {
            match self.index(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Skip(len) => buf.advance(len),
                Step::Frame(len) => {
                    let bytes = buf.split_to(len).freeze();
                    return Ok(Some(FrameView::new(bytes, &self.nodes)));
                }
            }
        }
    }

    /// [`Decoder::decode_view`] for input that is already a [`Bytes`]:
    /// removes the first frame from the front of `buf`, which then still
    /// holds the rest.
    pub fn decode_view_bytes(&mut self, buf: &mut Bytes) -> Result<Option<FrameView<'_>>, Error> {
        loop {
            match self.index(buf)? {
                Step::NeedMore => return Ok(None),
                Step::Skip(len) => buf.advance(len),
                Step::Frame(len) => {
                    // When the frame is the whole buffer this takes `buf`
                    // without touching the reference count.
                    let bytes = buf.split_to(len);
                    return Ok(Some(FrameView::new(bytes, &self.nodes)));
                }
            }
        }
    }

    /// Releases the memory of the element index kept for
    /// [`Decoder::decode_view`] (for example after an unusually large frame).
    pub fn shrink(&mut self) {
        self.nodes = Vec::new();
    }

    /// Indexes the first frame of `buf` into `self.nodes`.
    fn index(&mut self, buf: &[u8]) -> Result<Step, Error> {
        let limits = *self.scanner.limits();
        // As in `decode_bytes`: index straight from the buffer when no frame
        // is in progress, and fall back to the resumable scanner (which then
        // keeps the progress) if the frame is incomplete.
        if let (false, Some(&ty)) = (self.scanner.is_partial(), buf.first())
            && crate::is_type_byte(ty)
        {
            let mut ix = Indexer::new(buf, limits, &mut self.nodes);
            match ix.element(ty, limits.depth()) {
                Ok(()) => return Ok(Step::Frame(ix.pos)),
                // Ran out of bytes.
                Err(Error::NotOneFrame) => {}
                Err(e) => return Err(e),
            }
        }
        let Some(len) = self.scanner.scan(buf)? else {
            return Ok(Step::NeedMore);
        };
        let frame = buf.get(..len).ok_or(Error::NotOneFrame)?;
        let mut ix = Indexer::new(frame, limits, &mut self.nodes);
        let framed = ix.top()?;
        if ix.pos != len {
            return Err(Error::NotOneFrame);
        }
        Ok(if framed {
            Step::Frame(len)
        } else {
            Step::Skip(len)
        })
    }

    /// Builds the frame held by the first `len` bytes of `bytes` (exactly one
    /// scanned frame); `None` for an empty inline line, which Redis skips.
    #[inline(always)]
    fn build(&self, bytes: &Bytes, len: usize) -> Result<Option<Frame>, Error> {
        let mut build = Build {
            src: bytes,
            buf: bytes.get(..len).ok_or(Error::NotOneFrame)?,
            pos: 0,
            limits: *self.scanner.limits(),
        };
        let frame = build.frame(self.scanner.limits().depth(), true)?;
        if build.pos != len {
            return Err(Error::NotOneFrame);
        }
        Ok(frame)
    }
}

/// What [`Decoder::index`] found at the start of the buffer.
enum Step {
    /// No complete frame yet.
    NeedMore,
    /// An empty inline line of this length, to skip.
    Skip(usize),
    /// A frame of this length, indexed.
    Frame(usize),
}
