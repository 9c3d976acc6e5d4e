//! Resource limits applied while scanning and decoding.

use crate::Error;

/// Hard ceiling on nesting depth, whatever [`Limits::max_depth`] says.
///
/// The decoder builds nested frames recursively; this cap keeps its stack use
/// bounded (about 200 bytes per level) on any thread.
pub const MAX_DEPTH_CEILING: usize = 1024;

/// Bounds on what a peer can make the scanner and decoder accept.
///
/// Every limit is checked as soon as the header that announces a size has been
/// read, before any payload arrives, so a peer cannot make the codec buffer or
/// allocate more than the limits allow.
///
/// The defaults follow Redis:
///
/// | field            | default            | Redis equivalent                            |
/// |------------------|--------------------|---------------------------------------------|
/// | `max_bulk_len`   | 512 MiB            | `proto-max-bulk-len`                        |
/// | `max_elements`   | 1,048,576 (2^20)   | multibulk length cap (per aggregate)        |
/// | `max_depth`      | 128                | (Redis replies nest a few levels at most)   |
/// | `max_inline_len` | 64 KiB             | `PROTO_INLINE_MAX_SIZE`                     |
///
/// `max_inline_len` also bounds every other CRLF-terminated line (simple
/// strings, errors, integers, doubles, big numbers), so a peer that never sends
/// `\r\n` is rejected after that many bytes instead of growing the buffer.
/// Replies with more than 2^20 elements (for example `KEYS *` on a large
/// database) need a larger `max_elements`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted bulk string, bulk error or verbatim string payload, in bytes.
    pub max_bulk_len: usize,
    /// Largest accepted element count of one aggregate (array, set, push) or
    /// pair count of one map or attribute.
    pub max_elements: usize,
    /// Deepest accepted nesting of aggregates; a top-level array has depth 1.
    /// Values above [`MAX_DEPTH_CEILING`] act as the ceiling.
    pub max_depth: usize,
    /// Longest accepted line (inline command or simple line), excluding the line end.
    pub max_inline_len: usize,
}

impl Limits {
    /// Nesting depth actually enforced: `max_depth` capped at [`MAX_DEPTH_CEILING`].
    pub(crate) fn depth(&self) -> usize {
        self.max_depth.min(MAX_DEPTH_CEILING)
    }

    /// Checks the element count an aggregate header announces.
    #[inline]
    pub(crate) fn check_elements(&self, n: u64) -> Result<(), Error> {
        let max = self.max_elements;
        if usize::try_from(n).map_or(true, |n| n > max) {
            return Err(Error::TooManyElements { len: n, max });
        }
        Ok(())
    }

    /// Checks an aggregate of type `ty` with `n` elements, met with `depth`
    /// levels of nesting left, and returns the levels left for its children.
    /// An aggregate with children needs a level (an attribute always has one:
    /// the frame it is attached to).
    #[inline]
    pub(crate) fn enter_aggregate(&self, ty: u8, n: u64, depth: usize) -> Result<usize, Error> {
        self.check_elements(n)?;
        if depth == 0 && (n > 0 || ty == b'|') {
            return Err(Error::TooDeep { max: self.depth() });
        }
        Ok(depth.saturating_sub(1))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: 1 << 20,
            max_depth: 128,
            max_inline_len: 64 * 1024,
        }
    }
}
