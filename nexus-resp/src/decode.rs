//! Streaming decoding into [`Frame`]s.

use bytes::{Bytes, BytesMut};

use crate::lines::{self, Header};
use crate::{Error, Frame, Limits, Scanner};

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
}

impl Decoder {
    /// Creates a decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            scanner: Scanner::new(limits),
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
    /// has not fully arrived (nothing is removed then).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, Error> {
        loop {
            let Some(len) = self.scanner.scan(buf)? else {
                return Ok(None);
            };
            let bytes = buf.split_to(len).freeze();
            let depth = self.scanner.limits().depth();
            let mut build = Build {
                src: &bytes,
                pos: 0,
            };
            // `None`: an empty inline line, which Redis skips.
            if let Some(frame) = build.frame(depth, true)? {
                if build.pos != bytes.len() {
                    return Err(Error::NotOneFrame);
                }
                return Ok(Some(frame));
            }
        }
    }
}

/// One pass over the bytes of a complete, already scanned frame.
struct Build<'b> {
    src: &'b Bytes,
    pos: usize,
}

impl Build<'_> {
    fn frame(&mut self, depth: usize, top: bool) -> Result<Option<Frame>, Error> {
        let ty = *self.src.get(self.pos).ok_or(Error::NotOneFrame)?;
        if top && !crate::is_type_byte(ty) {
            return self.inline();
        }
        self.element(ty, depth).map(Some)
    }

    fn child(&mut self, depth: usize) -> Result<Frame, Error> {
        let ty = *self.src.get(self.pos).ok_or(Error::NotOneFrame)?;
        self.element(ty, depth)
    }

    fn element(&mut self, ty: u8, depth: usize) -> Result<Frame, Error> {
        let start = self.pos + 1;
        Ok(match ty {
            b'$' | b'!' | b'=' => {
                let (header, body) = self.header(start)?;
                let len = match header {
                    Header::Null if ty == b'$' => {
                        self.pos = body;
                        return Ok(Frame::NullBulk);
                    }
                    Header::Null => return Err(Error::InvalidLength),
                    Header::Len(len) => usize::try_from(len).map_err(|_| Error::NotOneFrame)?,
                };
                let end = body.checked_add(len).ok_or(Error::NotOneFrame)?;
                match self.src.get(end..end.saturating_add(2)) {
                    Some(b"\r\n") => {}
                    Some(_) => return Err(Error::MissingCrlf),
                    None => return Err(Error::NotOneFrame),
                }
                self.pos = end + 2;
                match ty {
                    b'$' => Frame::Bulk(self.src.slice(body..end)),
                    b'!' => Frame::BulkError(self.src.slice(body..end)),
                    _ => {
                        let payload = &self.src[body..end];
                        match payload {
                            [a, b, c, b':', ..] => Frame::Verbatim {
                                format: [*a, *b, *c],
                                text: self.src.slice(body + 4..end),
                            },
                            _ => return Err(Error::InvalidVerbatim),
                        }
                    }
                }
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let (header, body) = self.header(start)?;
                self.pos = body;
                let n = match header {
                    Header::Null if ty == b'*' => return Ok(Frame::NullArray),
                    Header::Null => return Err(Error::InvalidLength),
                    Header::Len(n) => n,
                };
                if depth == 0 {
                    return Err(Error::TooDeep { max: 0 });
                }
                let depth = depth - 1;
                match ty {
                    b'*' => Frame::Array(self.frames(n, depth)?),
                    b'~' => Frame::Set(self.frames(n, depth)?),
                    b'>' => Frame::Push(self.frames(n, depth)?),
                    b'%' => Frame::Map(self.pairs(n, depth)?),
                    _ => Frame::Attribute {
                        attributes: self.pairs(n, depth)?,
                        frame: Box::new(self.child(depth)?),
                    },
                }
            }
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {
                let rest = self.src.get(start..).ok_or(Error::NotOneFrame)?;
                let cr = start + memchr::memchr(b'\r', rest).ok_or(Error::NotOneFrame)?;
                self.pos = cr + 2;
                let line = &self.src[start..cr];
                match ty {
                    b'+' => Frame::Simple(self.src.slice(start..cr)),
                    b'-' => Frame::Error(self.src.slice(start..cr)),
                    b':' => Frame::Integer(lines::integer(line)?),
                    b',' => Frame::Double(lines::double(line)?),
                    b'#' => match line {
                        b"t" => Frame::Boolean(true),
                        b"f" => Frame::Boolean(false),
                        _ => return Err(Error::InvalidBoolean),
                    },
                    b'_' if line.is_empty() => Frame::Null,
                    b'_' => return Err(Error::InvalidNull),
                    _ => {
                        lines::big_number(line)?;
                        Frame::BigNumber(self.src.slice(start..cr))
                    }
                }
            }
            _ => return Err(Error::InvalidTypeByte(ty)),
        })
    }

    fn header(&self, start: usize) -> Result<(Header, usize), Error> {
        lines::header(self.src, start)?.ok_or(Error::NotOneFrame)
    }

    /// Room for `n` elements, but never more than the bytes left can hold
    /// (every element takes at least 3 bytes).
    fn capacity(&self, n: u64) -> usize {
        let left = (self.src.len() - self.pos.min(self.src.len())) / 3;
        usize::try_from(n).map_or(left, |n| n.min(left))
    }

    fn frames(&mut self, n: u64, depth: usize) -> Result<Vec<Frame>, Error> {
        let mut items = Vec::with_capacity(self.capacity(n));
        for _ in 0..n {
            items.push(self.child(depth)?);
        }
        Ok(items)
    }

    fn pairs(&mut self, n: u64, depth: usize) -> Result<Vec<(Frame, Frame)>, Error> {
        let mut pairs = Vec::with_capacity(self.capacity(n.saturating_mul(2)) / 2);
        for _ in 0..n {
            let key = self.child(depth)?;
            let value = self.child(depth)?;
            pairs.push((key, value));
        }
        Ok(pairs)
    }

    /// An inline command line (the whole source) as an array of bulk strings.
    fn inline(&mut self) -> Result<Option<Frame>, Error> {
        let cmd = match crate::Command::parse(self.src) {
            Ok(cmd) => cmd,
            Err(Error::NotACommand(_)) => {
                self.pos = self.src.len();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let base = self.src.as_ptr() as usize;
        let args = std::iter::once(cmd.name())
            .chain(cmd.args())
            .map(|arg| {
                // Arguments borrow from `src`: recover their offsets.
                let off = arg.as_ptr() as usize - base;
                Frame::Bulk(self.src.slice(off..off + arg.len()))
            })
            .collect();
        self.pos = self.src.len();
        Ok(Some(Frame::Array(args)))
    }
}
