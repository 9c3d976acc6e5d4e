//! One pass over a frame that records where its elements are (a flat,
//! pre-order index of [`Node`]s) instead of building [`Frame`](crate::Frame)s.
//!
//! It validates exactly what the [`Frame`](crate::Frame) builder in
//! `decode.rs` validates, in the same order, so both decoders accept and
//! reject the same inputs with the same errors.

use crate::lines::{self, Header};
use crate::view::Kind;
use crate::{Error, Limits};

/// One element of an indexed frame.
///
/// Field meaning by kind (offsets are into the frame's bytes):
/// - strings (simple, error, bulk, big number, bulk error, verbatim text):
///   `a..b` is the payload;
/// - integer: `a` holds the `i64` bits; double: the `f64` bits; boolean: 0/1;
/// - aggregates: `a` is the number of direct child nodes (pairs count twice,
///   an attribute also counts the frame it precedes) and `b` is the index
///   one past the last node of the aggregate's subtree;
/// - nulls: unused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) a: u64,
    pub(crate) b: u64,
}

impl Node {
    fn leaf(kind: Kind, a: u64, b: u64) -> Node {
        Node { kind, a, b }
    }

    fn span(kind: Kind, start: usize, end: usize) -> Node {
        Node::leaf(kind, start as u64, end as u64)
    }
}

/// Indexes the frame at the start of `buf` into `nodes` (which it clears).
///
/// `buf` may hold more than the frame (or, when indexing optimistically, less:
/// running out of bytes is [`Error::NotOneFrame`]). Every node costs at least
/// three bytes of input, so `nodes` never grows past `buf.len() / 3 + 1`.
pub(crate) struct Indexer<'b> {
    buf: &'b [u8],
    pub(crate) pos: usize,
    limits: Limits,
    nodes: &'b mut Vec<Node>,
}

impl<'b> Indexer<'b> {
    pub(crate) fn new(buf: &'b [u8], limits: Limits, nodes: &'b mut Vec<Node>) -> Self {
        nodes.clear();
        Indexer {
            buf,
            pos: 0,
            limits,
            nodes,
        }
    }

    /// Indexes a top-level frame: a RESP frame, or (for any other first byte)
    /// an inline command spanning all of `buf`. `Ok(false)` for an empty
    /// inline line, which Redis skips.
    pub(crate) fn top(&mut self) -> Result<bool, Error> {
        let ty = *self.buf.first().ok_or(Error::NotOneFrame)?;
        if crate::is_type_byte(ty) {
            self.element(ty, self.limits.depth())?;
            Ok(true)
        } else {
            self.inline()
        }
    }

    /// Indexes the element starting with type byte `ty` at `pos`.
    pub(crate) fn element(&mut self, ty: u8, depth: usize) -> Result<(), Error> {
        let start = self.pos + 1;
        match ty {
            b'$' => self.bulk(),
            b'!' | b'=' => {
                let (header, body) = self.header(start)?;
                let len = match header {
                    Header::Null => return Err(Error::InvalidLength),
                    Header::Len(len) => self.bulk_len(len)?,
                };
                if ty == b'=' && len < 4 {
                    return Err(Error::InvalidVerbatim);
                }
                let end = self.payload_end(body, len)?;
                if ty == b'!' {
                    self.nodes.push(Node::span(Kind::BulkError, body, end));
                } else if self.buf.get(body + 3) == Some(&b':') {
                    self.nodes.push(Node::span(Kind::Verbatim, body + 4, end));
                } else {
                    return Err(Error::InvalidVerbatim);
                }
                Ok(())
            }
            b'*' | b'%' | b'~' | b'>' | b'|' => self.aggregate(ty, start, depth),
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => self.line(ty, start),
            _ => Err(Error::InvalidTypeByte(ty)),
        }
    }

    /// A `$` bulk string (or RESP2 null) at `pos`.
    #[inline(always)]
    fn bulk(&mut self) -> Result<(), Error> {
        let (header, body) = self.header(self.pos + 1)?;
        let node = match header {
            Header::Null => {
                self.pos = body;
                Node::leaf(Kind::NullBulk, 0, 0)
            }
            Header::Len(len) => {
                let end = self.payload_end(body, self.bulk_len(len)?)?;
                Node::span(Kind::Bulk, body, end)
            }
        };
        self.nodes.push(node);
        Ok(())
    }

    /// Checks the `\r\n` after a payload of `len` bytes at `body`, moves past
    /// it and returns the payload's end.
    #[inline(always)]
    fn payload_end(&mut self, body: usize, len: usize) -> Result<usize, Error> {
        let end = body.checked_add(len).ok_or(Error::NotOneFrame)?;
        match self.buf.get(end..end.saturating_add(2)) {
            Some(b"\r\n") => {}
            Some(_) => return Err(Error::MissingCrlf),
            None => return Err(Error::NotOneFrame),
        }
        self.pos = end + 2;
        Ok(end)
    }

    fn aggregate(&mut self, ty: u8, start: usize, depth: usize) -> Result<(), Error> {
        let (header, body) = self.header(start)?;
        self.pos = body;
        let n = match header {
            Header::Null if ty == b'*' => {
                self.nodes.push(Node::leaf(Kind::NullArray, 0, 0));
                return Ok(());
            }
            Header::Null => return Err(Error::InvalidLength),
            Header::Len(n) => n,
        };
        let depth = self.limits.enter_aggregate(ty, n, depth)?;
        // n <= max_elements <= usize::MAX, so this cannot overflow a u64.
        let (kind, children) = match ty {
            b'*' => (Kind::Array, n),
            b'~' => (Kind::Set, n),
            b'>' => (Kind::Push, n),
            b'%' => (Kind::Map, n * 2),
            _ => (Kind::Attribute, n * 2 + 1),
        };
        let idx = self.nodes.len();
        self.nodes.push(Node::leaf(kind, children, 0));
        for _ in 0..children {
            // Bulk strings dominate real replies: take them without the
            // general dispatch.
            match self.buf.get(self.pos) {
                Some(b'$') => self.bulk()?,
                Some(&ty) => self.element(ty, depth)?,
                None => return Err(Error::NotOneFrame),
            }
        }
        let end = self.nodes.len() as u64;
        if let Some(node) = self.nodes.get_mut(idx) {
            node.b = end;
        }
        Ok(())
    }

    /// A CRLF-terminated line element (`+ - : , # _ (`).
    fn line(&mut self, ty: u8, start: usize) -> Result<(), Error> {
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
        let node = match ty {
            b'+' => Node::span(Kind::Simple, start, cr),
            b'-' => Node::span(Kind::Error, start, cr),
            b':' => Node::leaf(Kind::Integer, lines::integer(line)? as u64, 0),
            b',' => Node::leaf(Kind::Double, lines::double(line)?.to_bits(), 0),
            b'#' => match line {
                b"t" => Node::leaf(Kind::Boolean, 1, 0),
                b"f" => Node::leaf(Kind::Boolean, 0, 0),
                _ => return Err(Error::InvalidBoolean),
            },
            b'_' if line.is_empty() => Node::leaf(Kind::Null, 0, 0),
            b'_' => return Err(Error::InvalidNull),
            _ => {
                lines::big_number(line)?;
                Node::span(Kind::BigNumber, start, cr)
            }
        };
        self.nodes.push(node);
        Ok(())
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

    /// An inline command line (all of `buf`) as an array of bulk strings.
    fn inline(&mut self) -> Result<bool, Error> {
        let cmd = match crate::Command::parse(self.buf) {
            Ok(cmd) => cmd,
            Err(Error::NotACommand(_)) => {
                self.pos = self.buf.len();
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let base = self.buf.as_ptr() as usize;
        self.nodes
            .push(Node::leaf(Kind::Array, cmd.len() as u64, 0));
        for arg in std::iter::once(cmd.name()).chain(cmd.args()) {
            // Arguments borrow from `buf`: recover their offsets.
            let off = arg.as_ptr() as usize - base;
            self.nodes
                .push(Node::span(Kind::Bulk, off, off + arg.len()));
        }
        let end = self.nodes.len() as u64;
        if let Some(root) = self.nodes.first_mut() {
            root.b = end;
        }
        self.pos = self.buf.len();
        Ok(true)
    }
}
