//! The frame model and its encoding.

use bytes::{BufMut, Bytes};

use crate::encode;

/// One RESP2 or RESP3 frame. Payloads are [`Bytes`] slices of the buffer the
/// frame was decoded from (no copies).
///
/// RESP2 nulls (`$-1`, `*-1`) and the RESP3 null (`_`) are distinct variants so
/// that decoding then encoding reproduces the input bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK\r\n`
    Simple(Bytes),
    /// `-ERR message\r\n`
    Error(Bytes),
    /// `:42\r\n`
    Integer(i64),
    /// `$5\r\nhello\r\n`
    Bulk(Bytes),
    /// `$-1\r\n` (RESP2 null bulk string)
    NullBulk,
    /// `*2\r\n...`
    Array(Vec<Frame>),
    /// `*-1\r\n` (RESP2 null array)
    NullArray,
    /// `_\r\n` (RESP3 null)
    Null,
    /// `#t\r\n` / `#f\r\n`
    Boolean(bool),
    /// `,3.14\r\n`, `,inf\r\n`, `,-inf\r\n`, `,nan\r\n`
    Double(f64),
    /// `(3492890328409238509324850943850943825024385\r\n` (digits kept as sent)
    BigNumber(Bytes),
    /// `!21\r\nSYNTAX invalid syntax\r\n`
    BulkError(Bytes),
    /// `=15\r\ntxt:Some string\r\n`
    Verbatim {
        /// The three-byte format, such as `txt` or `mkd`.
        format: [u8; 3],
        /// The text after `xxx:`.
        text: Bytes,
    },
    /// `%2\r\n` followed by key, value, key, value
    Map(Vec<(Frame, Frame)>),
    /// `~2\r\n...`
    Set(Vec<Frame>),
    /// `|1\r\n` followed by key, value and then the frame the attributes describe.
    Attribute {
        /// The attribute pairs.
        attributes: Vec<(Frame, Frame)>,
        /// The frame the attributes are attached to.
        frame: Box<Frame>,
    },
    /// `>3\r\n...` (out-of-band data such as pub/sub messages)
    Push(Vec<Frame>),
}

impl Frame {
    /// Appends the wire form of this frame to `dst`.
    ///
    /// Simple strings, errors and big numbers must not contain `\r` or `\n`
    /// (RESP cannot express them); that is not checked.
    pub fn encode(&self, dst: &mut impl BufMut) {
        match self {
            Frame::Simple(s) => encode::line(dst, b'+', s),
            Frame::Error(s) => encode::line(dst, b'-', s),
            Frame::Integer(n) => encode::integer(dst, b':', *n),
            Frame::Bulk(b) => encode::bulk(dst, b),
            Frame::NullBulk => encode::null_bulk(dst),
            Frame::Array(items) => {
                encode::header(dst, b'*', items.len() as u64);
                items.iter().for_each(|f| f.encode(dst));
            }
            Frame::NullArray => dst.put_slice(b"*-1\r\n"),
            Frame::Null => dst.put_slice(b"_\r\n"),
            Frame::Boolean(b) => dst.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Double(d) => encode_double(dst, *d),
            Frame::BigNumber(s) => encode::line(dst, b'(', s),
            Frame::BulkError(s) => {
                encode::header(dst, b'!', s.len() as u64);
                dst.put_slice(s);
                dst.put_slice(b"\r\n");
            }
            Frame::Verbatim { format, text } => {
                encode::header(dst, b'=', text.len() as u64 + 4);
                dst.put_slice(format);
                dst.put_u8(b':');
                dst.put_slice(text);
                dst.put_slice(b"\r\n");
            }
            Frame::Map(pairs) => encode_pairs(dst, b'%', pairs),
            Frame::Set(items) => {
                encode::header(dst, b'~', items.len() as u64);
                items.iter().for_each(|f| f.encode(dst));
            }
            Frame::Attribute { attributes, frame } => {
                encode_pairs(dst, b'|', attributes);
                frame.encode(dst);
            }
            Frame::Push(items) => {
                encode::header(dst, b'>', items.len() as u64);
                items.iter().for_each(|f| f.encode(dst));
            }
        }
    }

    /// The payload of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// Whether this is any of the null variants.
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::Null | Frame::NullBulk | Frame::NullArray)
    }

    /// Whether this is an error reply (simple or bulk).
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BulkError(_))
    }
}

fn encode_pairs(dst: &mut impl BufMut, ty: u8, pairs: &[(Frame, Frame)]) {
    encode::header(dst, ty, pairs.len() as u64);
    for (k, v) in pairs {
        k.encode(dst);
        v.encode(dst);
    }
}

fn encode_double(dst: &mut impl BufMut, d: f64) {
    use std::fmt::Write;
    if d.is_nan() {
        dst.put_slice(b",nan\r\n");
    } else if d.is_infinite() {
        dst.put_slice(if d > 0.0 { b",inf\r\n" } else { b",-inf\r\n" });
    } else {
        // `{:?}` is the shortest form that parses back to the same value
        // (`1.5`, `1e300`); at most 24 bytes.
        let mut buf = StackBuf {
            buf: [0; 32],
            len: 0,
        };
        // Writing a finite f64 into 32 bytes cannot fail.
        let _ = write!(buf, "{d:?}");
        dst.put_u8(b',');
        dst.put_slice(&buf.buf[..buf.len]);
        dst.put_slice(b"\r\n");
    }
}

struct StackBuf {
    buf: [u8; 32],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
