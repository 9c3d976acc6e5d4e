//! Building a [`Frame`] tree in one pass over a frame's bytes.

use bytes::Bytes;

use crate::lines::{self, Header};
use crate::{Error, Frame, Limits};

/// One pass over the bytes of a complete, already scanned frame (or, from
/// `Decoder::decode_bytes`, of all bytes available, optimistically: running
/// out of bytes is then [`Error::NotOneFrame`]).
pub(crate) struct Build<'b> {
    pub(crate) src: &'b Bytes,
    /// The frame's bytes: `src` up to the end of the frame (or of the
    /// available bytes, when building optimistically).
    pub(crate) buf: &'b [u8],
    pub(crate) pos: usize,
    /// The limits, checked again so that an optimistic build (before any
    /// scan) rejects what the scanner would.
    pub(crate) limits: Limits,
}

impl Build<'_> {
    #[inline(always)]
    pub(crate) fn frame(&mut self, depth: usize, top: bool) -> Result<Option<Frame>, Error> {
        let ty = *self.buf.get(self.pos).ok_or(Error::NotOneFrame)?;
        if top && !crate::is_type_byte(ty) {
            return self.inline();
        }
        self.element(ty, depth).map(Some)
    }

    fn child(&mut self, depth: usize) -> Result<Frame, Error> {
        let ty = *self.buf.get(self.pos).ok_or(Error::NotOneFrame)?;
        self.element(ty, depth)
    }

    pub(crate) fn element(&mut self, ty: u8, depth: usize) -> Result<Frame, Error> {
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
                    Header::Len(len) => self.bulk_len(len)?,
                };
                if ty == b'=' && len < 4 {
                    return Err(Error::InvalidVerbatim);
                }
                let end = body.checked_add(len).ok_or(Error::NotOneFrame)?;
                match self.buf.get(end..end.saturating_add(2)) {
                    Some(b"\r\n") => {}
                    Some(_) => return Err(Error::MissingCrlf),
                    None => return Err(Error::NotOneFrame),
                }
                self.pos = end + 2;
                match ty {
                    b'$' => Frame::Bulk(self.src.slice(body..end)),
                    b'!' => Frame::BulkError(self.src.slice(body..end)),
                    _ => {
                        let payload = &self.buf[body..end];
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
                let depth = self.limits.enter_aggregate(ty, n, depth)?;
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
                let rest = self.buf.get(start..).ok_or(Error::NotOneFrame)?;
                let cr = start + memchr::memchr(b'\r', rest).ok_or(Error::NotOneFrame)?;
                let max = self.limits.max_inline_len;
                if cr - start > max {
                    return Err(Error::LineTooLong { max });
                }
                match self.buf.get(cr + 1) {
                    Some(b'\n') => {}
                    Some(_) => return Err(Error::MissingCrlf),
                    None => return Err(Error::NotOneFrame),
                }
                self.pos = cr + 2;
                let line = &self.buf[start..cr];
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

    /// The payload span of the `$` bulk string at `pos` (`None`: RESP2 null).
    #[inline(always)]
    fn bulk_span(&mut self) -> Result<Option<(usize, usize)>, Error> {
        let (header, body) = self.header(self.pos + 1)?;
        let Header::Len(len) = header else {
            self.pos = body;
            return Ok(None);
        };
        let end = body
            .checked_add(self.bulk_len(len)?)
            .ok_or(Error::NotOneFrame)?;
        match self.buf.get(end..end.saturating_add(2)) {
            Some(b"\r\n") => {}
            Some(_) => return Err(Error::MissingCrlf),
            None => return Err(Error::NotOneFrame),
        }
        self.pos = end + 2;
        Ok(Some((body, end)))
    }

    fn bulk_len(&self, len: u64) -> Result<usize, Error> {
        let max = self.limits.max_bulk_len;
        match usize::try_from(len) {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Error::BulkTooLong { len, max }),
        }
    }

    #[inline(always)]
    fn header(&self, start: usize) -> Result<(Header, usize), Error> {
        lines::header(self.buf, start)?.ok_or(Error::NotOneFrame)
    }

    /// Room for `n` elements, but never more than the bytes left can hold
    /// (every element takes at least 3 bytes).
    fn capacity(&self, n: u64) -> usize {
        let left = (self.buf.len() - self.pos.min(self.buf.len())) / 3;
        usize::try_from(n).map_or(left, |n| n.min(left))
    }

    fn frames(&mut self, n: u64, depth: usize) -> Result<Vec<Frame>, Error> {
        let mut items = Vec::with_capacity(self.capacity(n));
        for _ in 0..n {
            // Bulk strings dominate real replies: build them in place so the
            // frame is written straight into the vector.
            match self.buf.get(self.pos) {
                Some(b'$') => match self.bulk_span()? {
                    Some((body, end)) => items.push(Frame::Bulk(self.src.slice(body..end))),
                    None => items.push(Frame::NullBulk),
                },
                Some(&ty) => items.push(self.element(ty, depth)?),
                None => return Err(Error::NotOneFrame),
            }
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
        let cmd = match crate::Command::parse(self.buf) {
            Ok(cmd) => cmd,
            Err(Error::NotACommand(_)) => {
                self.pos = self.buf.len();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let base = self.buf.as_ptr() as usize;
        let args = std::iter::once(cmd.name())
            .chain(cmd.args())
            .map(|arg| {
                // Arguments borrow from `src`: recover their offsets.
                let off = arg.as_ptr() as usize - base;
                Frame::Bulk(self.src.slice(off..off + arg.len()))
            })
            .collect();
        self.pos = self.buf.len();
        Ok(Some(Frame::Array(args)))
    }
}
