//! Offset-based frames: one [`Bytes`] per decoded frame plus an index of
//! where its elements are, instead of one [`Bytes`] handle per element.

use std::fmt;

use bytes::Bytes;

use crate::Frame;
use crate::index::Node;

/// The type of a frame or element, one per [`Frame`] variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// [`Frame::Simple`]
    Simple,
    /// [`Frame::Error`]
    Error,
    /// [`Frame::Integer`]
    Integer,
    /// [`Frame::Bulk`]
    Bulk,
    /// [`Frame::NullBulk`]
    NullBulk,
    /// [`Frame::Array`]
    Array,
    /// [`Frame::NullArray`]
    NullArray,
    /// [`Frame::Null`]
    Null,
    /// [`Frame::Boolean`]
    Boolean,
    /// [`Frame::Double`]
    Double,
    /// [`Frame::BigNumber`]
    BigNumber,
    /// [`Frame::BulkError`]
    BulkError,
    /// [`Frame::Verbatim`]
    Verbatim,
    /// [`Frame::Map`]
    Map,
    /// [`Frame::Set`]
    Set,
    /// [`Frame::Attribute`]
    Attribute,
    /// [`Frame::Push`]
    Push,
}

impl Kind {
    #[inline]
    fn is_aggregate(self) -> bool {
        matches!(
            self,
            Kind::Array | Kind::Map | Kind::Set | Kind::Attribute | Kind::Push
        )
    }
}

/// One decoded frame held as its wire bytes plus an index of its elements,
/// returned by [`Decoder::decode_view`](crate::Decoder::decode_view) and
/// [`Decoder::decode_view_bytes`](crate::Decoder::decode_view_bytes).
///
/// Decoding into a view validates the frame exactly as decoding into a
/// [`Frame`] does, but costs one reference count per frame instead of one
/// per element, and no allocation once the decoder's index has grown to the
/// largest frame seen (the index borrows from the decoder, hence the
/// lifetime). Elements are read as `&[u8]` slices, or as zero-copy
/// [`Bytes`] with [`FrameRef::to_bytes`] (one reference count each), or the
/// whole frame converted with [`FrameView::to_frame`].
///
/// ```
/// use bytes::Bytes;
/// use nexus_resp::{Decoder, Kind, Limits};
///
/// let mut buf = Bytes::from_static(b"*3\r\n$1\r\na\r\n:7\r\n$-1\r\n+OK\r\n");
/// let mut decoder = Decoder::new(Limits::default());
/// let view = decoder.decode_view_bytes(&mut buf).unwrap().unwrap();
/// let root = view.root();
/// assert_eq!(root.kind(), Kind::Array);
/// let mut items = root.iter();
/// assert_eq!(items.next().unwrap().as_slice(), Some(&b"a"[..]));
/// assert_eq!(items.next().unwrap().as_integer(), Some(7));
/// assert!(items.next().unwrap().is_null());
/// assert!(items.next().is_none());
/// // The frame's wire bytes, e.g. to forward them untouched.
/// assert_eq!(view.bytes().len(), 20);
/// // The rest of the buffer is left for the next call.
/// assert_eq!(buf, &b"+OK\r\n"[..]);
/// ```
pub struct FrameView<'d> {
    bytes: Bytes,
    nodes: &'d [Node],
}

impl<'d> FrameView<'d> {
    pub(crate) fn new(bytes: Bytes, nodes: &'d [Node]) -> Self {
        FrameView { bytes, nodes }
    }

    /// The top-level frame.
    #[inline]
    pub fn root(&self) -> FrameRef<'_> {
        FrameRef {
            bytes: &self.bytes,
            nodes: self.nodes,
            idx: 0,
        }
    }

    /// The frame's wire bytes (exactly one frame; for an inline command, the
    /// line with its terminator).
    #[inline]
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The frame's wire bytes, consuming the view.
    #[inline]
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Builds the owned [`Frame`], the same value
    /// [`Decoder::decode`](crate::Decoder::decode) returns for these bytes.
    pub fn to_frame(&self) -> Frame {
        self.root().to_frame()
    }
}

impl fmt::Debug for FrameView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root().fmt(f)
    }
}

/// A borrowed element of a [`FrameView`] (or the view's root).
#[derive(Clone, Copy)]
pub struct FrameRef<'a> {
    bytes: &'a Bytes,
    /// Invariant: `idx < nodes.len()`, and every aggregate node's children
    /// follow it in pre-order, ending at its `b`.
    nodes: &'a [Node],
    idx: usize,
}

impl<'a> FrameRef<'a> {
    #[inline]
    fn node(&self) -> Node {
        self.nodes[self.idx]
    }

    /// The type of this element.
    #[inline]
    pub fn kind(&self) -> Kind {
        self.node().kind
    }

    #[inline]
    fn span(&self) -> Option<(usize, usize)> {
        let node = self.node();
        match node.kind {
            Kind::Simple
            | Kind::Error
            | Kind::Bulk
            | Kind::BigNumber
            | Kind::BulkError
            | Kind::Verbatim => Some((node.a as usize, node.b as usize)),
            _ => None,
        }
    }

    /// The payload of a simple string, error, bulk string, big number
    /// (digits as sent), bulk error, or verbatim string (the text after
    /// `xxx:`); `None` for other kinds.
    #[inline]
    pub fn as_slice(&self) -> Option<&'a [u8]> {
        self.span().map(|(start, end)| &self.bytes[start..end])
    }

    /// Like [`FrameRef::as_slice`], as a zero-copy slice of the frame's
    /// [`Bytes`] (one reference count).
    #[inline]
    pub fn to_bytes(&self) -> Option<Bytes> {
        self.span().map(|(start, end)| self.bytes.slice(start..end))
    }

    /// The value of an integer.
    #[inline]
    pub fn as_integer(&self) -> Option<i64> {
        let node = self.node();
        (node.kind == Kind::Integer).then_some(node.a as i64)
    }

    /// The value of a double.
    #[inline]
    pub fn as_double(&self) -> Option<f64> {
        let node = self.node();
        (node.kind == Kind::Double).then(|| f64::from_bits(node.a))
    }

    /// The value of a boolean.
    #[inline]
    pub fn as_bool(&self) -> Option<bool> {
        let node = self.node();
        (node.kind == Kind::Boolean).then_some(node.a != 0)
    }

    /// The three-byte format of a verbatim string, such as `txt`.
    pub fn verbatim_format(&self) -> Option<[u8; 3]> {
        let node = self.node();
        if node.kind != Kind::Verbatim {
            return None;
        }
        let text = node.a as usize;
        match self.bytes.get(text - 4..text - 1) {
            Some(&[a, b, c]) => Some([a, b, c]),
            _ => None,
        }
    }

    /// Whether this is any of the null kinds.
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(self.kind(), Kind::Null | Kind::NullBulk | Kind::NullArray)
    }

    /// Number of direct elements of an aggregate, as [`FrameRef::iter`]
    /// yields them (a map of `n` pairs has `2n`, an attribute of `n` pairs
    /// `2n + 1`); 0 for other kinds.
    #[inline]
    pub fn len(&self) -> usize {
        let node = self.node();
        if node.kind.is_aggregate() {
            node.a as usize
        } else {
            0
        }
    }

    /// Whether [`FrameRef::len`] is 0.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The direct elements of an aggregate in wire order: for a map or an
    /// attribute, key, value, key, value, ...; an attribute ends with the
    /// frame it is attached to. Empty for other kinds.
    #[inline]
    pub fn iter(&self) -> Elements<'a> {
        Elements {
            bytes: self.bytes,
            nodes: self.nodes,
            next: self.idx + 1,
            left: self.len(),
        }
    }

    /// Builds the owned [`Frame`] for this element (payloads are zero-copy
    /// [`Bytes`] slices).
    pub fn to_frame(&self) -> Frame {
        let node = self.node();
        let bytes = || self.to_bytes().unwrap_or_default();
        match node.kind {
            Kind::Simple => Frame::Simple(bytes()),
            Kind::Error => Frame::Error(bytes()),
            Kind::Integer => Frame::Integer(node.a as i64),
            Kind::Bulk => Frame::Bulk(bytes()),
            Kind::NullBulk => Frame::NullBulk,
            Kind::NullArray => Frame::NullArray,
            Kind::Null => Frame::Null,
            Kind::Boolean => Frame::Boolean(node.a != 0),
            Kind::Double => Frame::Double(f64::from_bits(node.a)),
            Kind::BigNumber => Frame::BigNumber(bytes()),
            Kind::BulkError => Frame::BulkError(bytes()),
            Kind::Verbatim => Frame::Verbatim {
                format: self.verbatim_format().unwrap_or_default(),
                text: bytes(),
            },
            Kind::Array => Frame::Array(self.iter().map(|e| e.to_frame()).collect()),
            Kind::Set => Frame::Set(self.iter().map(|e| e.to_frame()).collect()),
            Kind::Push => Frame::Push(self.iter().map(|e| e.to_frame()).collect()),
            Kind::Map => Frame::Map(pairs(&mut self.iter())),
            Kind::Attribute => {
                let mut items = self.iter();
                let attributes = pairs(&mut items.by_ref().take(self.len() - 1));
                let frame = items.next().map_or(Frame::Null, |f| f.to_frame());
                Frame::Attribute {
                    attributes,
                    frame: Box::new(frame),
                }
            }
        }
    }

    /// Index one past this element's subtree.
    #[inline]
    fn end(&self) -> usize {
        let node = self.node();
        if node.kind.is_aggregate() {
            node.b as usize
        } else {
            self.idx + 1
        }
    }
}

fn pairs<'a>(items: &mut impl Iterator<Item = FrameRef<'a>>) -> Vec<(Frame, Frame)> {
    let mut out = Vec::with_capacity(items.size_hint().0 / 2);
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        out.push((k.to_frame(), v.to_frame()));
    }
    out
}

impl fmt::Debug for FrameRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_frame().fmt(f)
    }
}

/// Iterator over the direct elements of an aggregate ([`FrameRef::iter`]).
#[derive(Debug, Clone)]
pub struct Elements<'a> {
    bytes: &'a Bytes,
    nodes: &'a [Node],
    next: usize,
    left: usize,
}

impl<'a> Iterator for Elements<'a> {
    type Item = FrameRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<FrameRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let item = FrameRef {
            bytes: self.bytes,
            nodes: self.nodes,
            idx: self.next,
        };
        self.next = item.end();
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Elements<'_> {}
