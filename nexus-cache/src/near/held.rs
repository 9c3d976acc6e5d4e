//! [`HeldMarks`]: the write marks a pinned session keeps until it ends,
//! once its replies cannot be counted ([`super::pinned`]).
//!
//! Like one batch's [`WriteMarks`], but with room for [`MAX_HELD`] distinct
//! stripes (a session may write many keys over its life, and each stripe
//! held keeps fills of its keys out only), then one global pending mark.
//! Bound: [`MAX_HELD`] stripes (2 bytes each) per session.

use std::sync::Arc;

use super::marks::{merge_all, merge_guard};
use super::{Inner, WriteMarks};
use crate::stampede::marks::GuardWrites;

/// Distinct stripes one session holds before it holds the global mark.
pub(crate) const MAX_HELD: usize = 256;

/// Marks held until the session ends (released when dropped).
#[derive(Default)]
pub(crate) struct HeldMarks {
    inner: Option<Arc<Inner>>,
    /// Pending stripes, each counted once.
    stripes: Vec<u16>,
    /// One global pending mark held.
    all: bool,
    unmarked: bool,
    /// The stampede guard's side.
    pub(crate) guard: Option<Box<GuardWrites>>,
}

impl std::fmt::Debug for HeldMarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldMarks")
            .field("stripes", &self.stripes.len())
            .field("all", &self.all)
            .finish_non_exhaustive()
    }
}

impl HeldMarks {
    /// Takes `marks` (already begun) to hold them until these are dropped.
    pub(crate) fn absorb(&mut self, mut marks: WriteMarks) {
        self.unmarked |= std::mem::take(&mut marks.unmarked);
        if let Some(inner) = marks.inner.take() {
            for &s in &marks.stripes[..usize::from(marks.len)] {
                if !self.all && !self.stripes.contains(&s) && self.stripes.len() < MAX_HELD {
                    // Its pending count moves here.
                    self.stripes.push(s);
                    continue;
                }
                if !self.all && !self.stripes.contains(&s) {
                    // Over the bound: the global mark, taken before the
                    // stripe's own ends.
                    inner.versions.begin_all();
                    self.all = true;
                }
                inner.versions.end(usize::from(s));
            }
            merge_all(&inner, &mut self.all, marks.all);
            self.inner.get_or_insert(inner);
        }
        marks.len = 0;
        marks.all = false;
        merge_guard(&mut self.guard, marks.guard.take());
    }
}

impl Drop for HeldMarks {
    fn drop(&mut self) {
        // As a batch's marks: end every pending mark (an unmarked write
        // seen after the cache came into use flushes it).
        let mut marks = WriteMarks::new();
        marks.inner = self.inner.take();
        marks.unmarked = self.unmarked;
        marks.guard = self.guard.take();
        if let Some(inner) = &marks.inner {
            for &s in &self.stripes {
                inner.versions.end(usize::from(s));
            }
            if self.all {
                inner.versions.end_all();
            }
            if marks.unmarked && inner.used.load(std::sync::atomic::Ordering::SeqCst) {
                inner.versions.bump_all();
                inner.flush_entries();
                marks.unmarked = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::near::marks::tests::{inner, marks, open};
    use crate::near::versions::STRIPES;

    #[test]
    fn held_stripes_are_counted_once_and_bounded() {
        let inner = inner();
        let mut held = HeldMarks::default();
        // The same stripe written twice is held once.
        held.absorb(marks(&inner, &[5]));
        held.absorb(marks(&inner, &[5, 6]));
        assert_eq!(held.stripes.len(), 2);
        assert!(!open(&inner, 5) && !open(&inner, 6) && open(&inner, 7));
        // Up to the bound, stripe by stripe; beyond it, the global mark.
        for s in 100..(100 + MAX_HELD) {
            held.absorb(marks(&inner, &[s]));
        }
        assert!(held.all && held.stripes.len() == MAX_HELD);
        assert!((0..STRIPES).step_by(89).all(|s| !open(&inner, s)));
        drop(held);
        assert!((0..STRIPES).all(|s| open(&inner, s)), "pending left over");
    }
}
