//! The set of endpoints a retry should avoid.

/// How many failed endpoints a request remembers (bounded: a retry with more
/// attempts than this forgets the oldest).
pub const EXCLUDE_CAPACITY: usize = 4;

/// Endpoints to avoid for one request, by [`EndpointHandle::id`](crate::EndpointHandle::id).
///
/// The retry policy puts it in the request's extensions after a failed
/// attempt; [`Lb`](crate::Lb) reads it and passes it to
/// [`Balancer::pick_excluding`](crate::Balancer::pick_excluding). A `Copy`
/// ring of [`EXCLUDE_CAPACITY`] ids: no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exclude {
    ids: [u64; EXCLUDE_CAPACITY],
    len: u8,
    next: u8,
}

impl Exclude {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            ids: [0; EXCLUDE_CAPACITY],
            len: 0,
            next: 0,
        }
    }

    /// Adds an endpoint id, evicting the oldest when full.
    pub fn insert(&mut self, id: u64) {
        if self.contains(id) {
            return;
        }
        self.ids[usize::from(self.next)] = id;
        self.next = (self.next + 1) % EXCLUDE_CAPACITY as u8;
        self.len = (self.len + 1).min(EXCLUDE_CAPACITY as u8);
    }

    /// Whether `id` is excluded.
    #[inline]
    pub fn contains(&self, id: u64) -> bool {
        self.ids[..usize::from(self.len)].contains(&id)
    }

    /// Whether nothing is excluded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bounded_ring_forgets_the_oldest() {
        let mut e = Exclude::new();
        assert!(e.is_empty());
        for id in 1..=5 {
            e.insert(id);
        }
        assert_eq!(e.len(), EXCLUDE_CAPACITY);
        assert!(!e.contains(1));
        assert!((2..=5).all(|id| e.contains(id)));
        e.insert(5);
        assert_eq!(e.len(), EXCLUDE_CAPACITY);
    }
}
