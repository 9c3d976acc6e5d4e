//! Streaming, zero-copy RESP2/RESP3 codec: scan-only framer, decoder,
//! command view, encoder and tokio codec.
//!
//! Built for proxies and clients that must handle every byte a Redis peer can
//! send:
//!
//! - **Binary-safe and zero-copy.** Payloads are [`bytes::Bytes`] slices of
//!   the read buffer; nothing is converted to UTF-8 or copied.
//! - **Streaming.** [`Scanner`] and [`Decoder`] return `Ok(None)` until a whole
//!   frame has arrived, consume exactly one frame, accept any split of the
//!   input, and keep their progress between calls, so a large frame arriving in
//!   many chunks is scanned once overall. Bulk payloads are skipped by length,
//!   never scanned.
//! - **Bounded.** [`Limits`] cap bulk length, element count, nesting depth and
//!   line length; violations and malformed input are typed [`Error`]s. No input
//!   makes the codec panic, hang, or allocate more than the bytes it has
//!   received justify.
//! - **Allocation-free framing.** The scan path never allocates; the
//!   [`Command`] view borrows its arguments.
//!
//! # Decoding a pipelined buffer
//!
//! ```
//! use bytes::BytesMut;
//! use nexus_resp::{Command, Decoder, Frame, Limits, Scanner};
//!
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\nPING\r\n+OK\r\n:4"[..]);
//! let mut decoder = Decoder::new(Limits::default());
//!
//! let first = decoder.decode(&mut buf).unwrap().unwrap();
//! assert_eq!(first, Frame::Array(vec![Frame::Bulk("GET".into()), Frame::Bulk("key:1".into())]));
//! // Inline commands decode as arrays of bulk strings.
//! let second = decoder.decode(&mut buf).unwrap().unwrap();
//! assert_eq!(second, Frame::Array(vec![Frame::Bulk("PING".into())]));
//! assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Frame::Simple("OK".into())));
//! // `:4` has no line end yet: need more bytes.
//! assert_eq!(decoder.decode(&mut buf).unwrap(), None);
//! buf.extend_from_slice(b"2\r\n");
//! assert_eq!(decoder.decode(&mut buf).unwrap(), Some(Frame::Integer(42)));
//!
//! // A proxy that forwards raw bytes only needs frame boundaries.
//! let raw = b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n*1\r\n$4\r\nPING\r\n";
//! let mut scanner = Scanner::new(Limits::default());
//! let n = scanner.scan(raw).unwrap().unwrap();
//! let cmd = Command::parse(&raw[..n]).unwrap();
//! assert!(cmd.is(b"GET"));
//! assert_eq!(cmd.keys().collect::<Vec<_>>(), [&b"key:1"[..]]);
//! ```
//!
//! [`Decoder::decode_bytes`] does the same for input that is already a
//! [`bytes::Bytes`].
//!
//! # Views: one reference count per frame
//!
//! A [`Frame`] tree holds one [`bytes::Bytes`] handle per string element, and
//! creating and dropping each handle is an atomic reference-count update.
//! [`Decoder::decode_view`] and [`Decoder::decode_view_bytes`] validate the
//! same input the same way but return a [`FrameView`]: the frame's bytes (one
//! handle) plus an index of its elements kept in the decoder and reused, so
//! decoding allocates nothing once warm. Elements are read in place through
//! [`FrameRef`] (`&[u8]`, integers, ...), taken as zero-copy `Bytes` on
//! demand, or converted with [`FrameView::to_frame`].
//!
//! ```
//! use bytes::Bytes;
//! use nexus_resp::{Decoder, Kind, Limits};
//!
//! let mut buf = Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n:1\r\n");
//! let mut decoder = Decoder::new(Limits::default());
//! let view = decoder.decode_view_bytes(&mut buf).unwrap().unwrap();
//! assert_eq!(view.root().kind(), Kind::Array);
//! let args: Vec<&[u8]> = view.root().iter().filter_map(|a| a.as_slice()).collect();
//! assert_eq!(args, [&b"GET"[..], &b"key:1"[..]]);
//! let view = decoder.decode_view_bytes(&mut buf).unwrap().unwrap();
//! assert_eq!(view.root().as_integer(), Some(1));
//! ```
//!
//! # Encoding
//!
//! ```
//! use nexus_resp::{encode, Frame};
//!
//! let mut out = Vec::new();
//! encode::command(&mut out, &[b"SET", b"key:123", b"value"]);
//! assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$7\r\nkey:123\r\n$5\r\nvalue\r\n");
//!
//! out.clear();
//! Frame::Map(vec![(Frame::Simple("a".into()), Frame::Integer(1))]).encode(&mut out);
//! assert_eq!(out, b"%1\r\n+a\r\n:1\r\n");
//! ```
//!
//! # Supported protocol
//!
//! All RESP2 types and the RESP3 types null `_`, boolean `#`, double `,`, big
//! number `(`, bulk error `!`, verbatim string `=`, map `%`, set `~`,
//! attribute `|` and push `>`. An attribute is part of the frame it precedes:
//! the scanner reports both as one frame, and the decoder returns
//! [`Frame::Attribute`] wrapping that frame. RESP3 streamed strings and
//! aggregates (`$?`, `*?`, ...) are rejected with
//! [`Error::StreamedUnsupported`]; Redis never sends them.
//!
//! Inline commands (`PING\r\n`, `SET a b\r\n`) are accepted at the top level
//! by default, as Redis does for any line whose first byte is not a RESP type
//! byte; turn them off with `inline(false)` when reading replies. See
//! [`Command`] for the quoting rules supported.

mod build;
mod command;
mod decode;
pub mod encode;
mod error;
mod frame;
mod index;
mod keys;
mod limits;
mod lines;
mod scan;
mod view;

#[cfg(feature = "codec")]
pub mod codec;

pub use command::Command;
pub use decode::Decoder;
pub use error::Error;
pub use frame::Frame;
pub use limits::{Limits, MAX_DEPTH_CEILING};
pub use scan::Scanner;
pub use view::{Elements, FrameRef, FrameView, Kind};

/// Whether `b` starts a RESP2/RESP3 frame (streamed-chunk markers excluded).
pub(crate) fn is_type_byte(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b':'
            | b'$'
            | b'*'
            | b'_'
            | b'#'
            | b','
            | b'('
            | b'!'
            | b'='
            | b'%'
            | b'~'
            | b'|'
            | b'>'
    )
}

#[cfg(test)]
mod tests;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
