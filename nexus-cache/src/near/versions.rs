//! Coherence bookkeeping: per-stripe versions and pending-write counts.
//!
//! A fill (a `GET` sent to Redis to populate the cache) takes a [`Ticket`]
//! before it is sent and may insert its reply only if, at insertion time and
//! under the entry's shard lock, nothing that could have written the key
//! happened since: no version bump on the key's stripe or globally, and no
//! write in progress. Writes through the proxy call [`Versions::begin`]
//! before they are forwarded (version bump, pending + 1) and
//! [`Versions::end`] once Redis acknowledged them, *before* the client sees
//! the reply (version bump, pending - 1). So:
//!
//! - a fill that read its ticket before a write's `end` and inserts after
//!   it is refused (version changed);
//! - a fill inserting between `begin` and `end` is refused (pending);
//! - a fill whose ticket was read after `end` was sent after Redis executed
//!   the write, so its reply is not older than the write.
//!
//! Invalidations from Redis (client tracking) bump the key's stripe: a fill
//! that was executed before the write, and whose reply arrives after the
//! invalidation, is refused. Flushes bump the global version.
//!
//! Bound: [`STRIPES`] stripes of 16 bytes (64 KiB), fixed.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::SeqCst};

/// Number of stripes (a power of two). Keys sharing a stripe share their
/// pending count: a write to one briefly blocks fills of the others.
pub(crate) const STRIPES: usize = 4096;

#[derive(Debug, Default)]
struct Stripe {
    version: AtomicU64,
    pending: AtomicU32,
}

/// What a fill remembers from before it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) stripe: usize,
    pub(crate) version: u64,
    pub(crate) global: u64,
}

/// The counters. Everything is `SeqCst`: writes and misses are rare next to
/// hits, which never touch these.
#[derive(Debug)]
pub(crate) struct Versions {
    stripes: Box<[Stripe]>,
    global: AtomicU64,
    global_pending: AtomicU64,
}

impl Versions {
    pub(crate) fn new() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            global: AtomicU64::new(0),
            global_pending: AtomicU64::new(0),
        }
    }

    /// The stripe of a key hash.
    pub(crate) const fn stripe_of(hash: u64) -> usize {
        (hash as usize) & (STRIPES - 1)
    }

    /// A ticket for a fill of a key on `stripe`, or `None` while a write that
    /// may touch it is in progress (the read then simply goes to Redis).
    pub(crate) fn ticket(&self, stripe: usize) -> Option<Ticket> {
        let s = &self.stripes[stripe];
        if s.pending.load(SeqCst) != 0 || self.global_pending.load(SeqCst) != 0 {
            return None;
        }
        Some(Ticket {
            stripe,
            version: s.version.load(SeqCst),
            global: self.global.load(SeqCst),
        })
    }

    /// Whether a fill holding `t` may still insert its reply. Pending counts
    /// are read before versions: `end` bumps the version before it drops the
    /// pending count, so seeing the count at zero implies seeing the bump.
    pub(crate) fn still_valid(&self, t: &Ticket) -> bool {
        let s = &self.stripes[t.stripe];
        s.pending.load(SeqCst) == 0
            && self.global_pending.load(SeqCst) == 0
            && s.version.load(SeqCst) == t.version
            && self.global.load(SeqCst) == t.global
    }

    /// A write to a key on `stripe` is about to be forwarded.
    pub(crate) fn begin(&self, stripe: usize) {
        let s = &self.stripes[stripe];
        s.pending.fetch_add(1, SeqCst);
        s.version.fetch_add(1, SeqCst);
    }

    /// The write [`begin`](Self::begin) announced was answered.
    pub(crate) fn end(&self, stripe: usize) {
        let s = &self.stripes[stripe];
        s.version.fetch_add(1, SeqCst);
        s.pending.fetch_sub(1, SeqCst);
    }

    /// A write to keys not known here is about to be forwarded.
    pub(crate) fn begin_all(&self) {
        self.global_pending.fetch_add(1, SeqCst);
        self.global.fetch_add(1, SeqCst);
    }

    /// The write [`begin_all`](Self::begin_all) announced was answered.
    pub(crate) fn end_all(&self) {
        self.global.fetch_add(1, SeqCst);
        self.global_pending.fetch_sub(1, SeqCst);
    }

    /// A key on `stripe` changed (an invalidation from Redis).
    pub(crate) fn bump(&self, stripe: usize) {
        self.stripes[stripe].version.fetch_add(1, SeqCst);
    }

    /// Everything may have changed (a flush).
    pub(crate) fn bump_all(&self) {
        self.global.fetch_add(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fills_are_refused_across_writes_and_invalidations() {
        let v = Versions::new();
        let t = v.ticket(7).unwrap();
        assert!(v.still_valid(&t));
        v.begin(7);
        assert!(v.ticket(7).is_none(), "no ticket while a write is pending");
        assert!(!v.still_valid(&t));
        v.end(7);
        assert!(
            !v.still_valid(&t),
            "a ticket from before the write stays refused"
        );
        let t2 = v.ticket(7).unwrap();
        assert!(v.still_valid(&t2));
        v.bump(8);
        assert!(v.still_valid(&t2), "other stripes do not matter");
        v.bump(7);
        assert!(!v.still_valid(&t2));
        let t3 = v.ticket(7).unwrap();
        v.begin_all();
        assert!(v.ticket(1).is_none());
        v.end_all();
        assert!(!v.still_valid(&t3));
        let t4 = v.ticket(7).unwrap();
        v.bump_all();
        assert!(!v.still_valid(&t4));
    }
}
