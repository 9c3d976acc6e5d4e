//! [`WriteMarks`]: the near-cache side of a batch of writes, from before it
//! is forwarded until Redis answered it (see [`super::versions`]).

use std::sync::Arc;

use super::Inner;
use crate::stampede::marks::GuardWrites;

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
    /// The stampede guard's side (writes on pinned connections, tag
    /// invalidations), released with these marks.
    pub(crate) guard: Option<Box<GuardWrites>>,
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
            guard: None,
        }
    }

    /// Whether these marks hold anything to release.
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_none() && !self.unmarked && self.guard.is_none()
    }

    /// Takes `other`'s marks, so that they are released with these (never
    /// earlier than `other` would have been). Bounded like a batch's: beyond
    /// [`MARKS`] stripes, one global pending mark.
    pub(crate) fn absorb(&mut self, mut other: WriteMarks) {
        self.unmarked |= std::mem::take(&mut other.unmarked);
        if let Some(inner) = other.inner.take() {
            let stripes = &other.stripes[..usize::from(other.len)];
            for &s in stripes {
                if !self.all && usize::from(self.len) < MARKS {
                    self.stripes[usize::from(self.len)] = s;
                    self.len += 1;
                } else {
                    // Covered by a global mark taken before the stripe ends.
                    if !self.all {
                        inner.versions.begin_all();
                        self.all = true;
                    }
                    inner.versions.end(usize::from(s));
                }
            }
            merge_all(&inner, &mut self.all, other.all);
            self.inner.get_or_insert(inner);
        }
        other.len = 0;
        other.all = false;
        merge_guard(&mut self.guard, other.guard.take());
    }
}

/// Takes over another holder's global mark: when `all` is already held,
/// `theirs` ends (one global mark pending per holder); otherwise it
/// becomes ours.
pub(super) fn merge_all(inner: &Inner, all: &mut bool, theirs: bool) {
    if theirs {
        if *all {
            inner.versions.end_all();
        } else {
            *all = true;
        }
    }
}

/// Takes over another holder's stampede-guard writes.
pub(super) fn merge_guard(mine: &mut Option<Box<GuardWrites>>, theirs: Option<Box<GuardWrites>>) {
    match (mine, theirs) {
        (Some(mine), Some(theirs)) => mine.absorb(*theirs),
        (mine @ None, theirs) => *mine = theirs,
        (Some(_), None) => {}
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

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::hotkeys::{HotKeys, HotKeysConfig};
    use crate::near::versions::{STRIPES, Versions};
    use crate::policy::metrics::MechanismMetrics;
    use crate::policy::{Policy, PolicyHandle};
    use crate::singleflight::Group;

    pub(in crate::near) fn inner() -> Arc<Inner> {
        let metrics = Arc::new(MechanismMetrics::default());
        Arc::new(Inner {
            policy: PolicyHandle::new(Policy::from_yaml_str("rules: []\n").unwrap()),
            stores: arc_swap::ArcSwapOption::empty(),
            versions: Versions::new(),
            fills: Group::with_metrics(Arc::clone(&metrics)),
            hot: Arc::new(HotKeys::with_metrics(
                HotKeysConfig::default(),
                Arc::clone(&metrics),
            )),
            metrics,
            used: AtomicBool::new(true),
        })
    }

    pub(in crate::near) fn marks(inner: &Arc<Inner>, stripes: &[usize]) -> WriteMarks {
        let mut m = WriteMarks::new();
        for &s in stripes {
            inner.versions.begin(s);
            m.stripes[usize::from(m.len)] = s as u16;
            m.len += 1;
        }
        m.inner = Some(Arc::clone(inner));
        m
    }

    pub(in crate::near) fn open(inner: &Inner, stripe: usize) -> bool {
        inner.versions.ticket(stripe).is_some()
    }

    #[test]
    fn absorbed_marks_stay_pending_until_released_and_balance() {
        let inner = inner();
        // Within the bound: stripes carried over one by one.
        let mut held = marks(&inner, &[1, 2]);
        held.absorb(marks(&inner, &[3]));
        assert!(!open(&inner, 3) && !open(&inner, 1));
        assert!(open(&inner, 4));
        // Beyond it: one global mark, taken before any stripe is ended.
        for s in 10..20 {
            held.absorb(marks(&inner, &[s]));
        }
        assert!(held.all);
        assert!((0..STRIPES).step_by(97).all(|s| !open(&inner, s)));
        // A global mark absorbed into a global mark is not counted twice.
        let mut other = marks(&inner, &[]);
        inner.versions.begin_all();
        other.all = true;
        held.absorb(other);
        drop(held);
        assert!((0..STRIPES).all(|s| open(&inner, s)), "pending left over");
    }
}
