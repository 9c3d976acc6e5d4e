//! [`WriteMarks`]: the near-cache side of a batch of writes, from before it
//! is forwarded until Redis answered it (see [`super::versions`]).

use std::sync::Arc;

use super::Inner;

/// Stripes one batch's [`WriteMarks`] remember; a batch writing more
/// near-cache keys falls back to one global pending mark.
pub(super) const MARKS: usize = 8;

/// The near-cache side of one batch of writes: acknowledged (dropped) once
/// Redis answered the batch, before the client sees the answer. Dropped
/// unanswered (client gone) it acknowledges as well: that write was never
/// acknowledged to anyone, and its tracking invalidation still arrives.
pub(crate) struct WriteMarks {
    pub(super) inner: Option<Arc<Inner>>,
    pub(super) stripes: [u16; MARKS],
    pub(super) len: u8,
    pub(super) all: bool,
    /// Written while the near cache was not in use yet.
    pub(super) unmarked: bool,
}

impl std::fmt::Debug for WriteMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteMarks")
            .field("stripes", &&self.stripes[..usize::from(self.len)])
            .field("all", &self.all)
            .finish()
    }
}

impl WriteMarks {
    /// No writes.
    pub(crate) const fn new() -> Self {
        Self {
            inner: None,
            stripes: [0; MARKS],
            len: 0,
            all: false,
            unmarked: false,
        }
    }

    /// Whether acknowledging these writes needs the near cache at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_none() && !self.unmarked
    }
}

impl Default for WriteMarks {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for WriteMarks {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            for &s in &self.stripes[..usize::from(self.len)] {
                inner.versions.end(usize::from(s));
            }
            if self.all {
                inner.versions.end_all();
            }
        }
    }
}
