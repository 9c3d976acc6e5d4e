//! [`GuardWrites`]: the stampede guard's side of writes whose replies the
//! proxy does not wait for itself (writes on pinned connections, tag
//! invalidations). It travels inside [`WriteMarks`](crate::near::WriteMarks)
//! and is released with them, once Redis answered the writes and before
//! the client sees the answer.
//!
//! Bounds: at most [`MAX_KEYS`] keys and [`MAX_KEY_BYTES`] bytes of keys are
//! remembered until the release; beyond, the writes count as writes of
//! every key on release (every stale copy is dropped, every lease of this
//! proxy cancelled). The keys beyond the bound still have their leases
//! deleted in Redis: they are kept only until the next
//! [`GuardWrites::begin`] or [`GuardWrites::take_overflow`], i.e. one
//! command's keys at most (bounded by the client's frame, which the proxy
//! holds anyway).

use std::sync::Arc;

use bytes::Bytes;

use super::Guard;

/// Keys remembered per [`GuardWrites`].
pub(crate) const MAX_KEYS: usize = 256;
/// Bytes of keys remembered per [`GuardWrites`].
pub(crate) const MAX_KEY_BYTES: usize = 64 * 1024;

/// Guarded keys written by writes not answered yet.
#[derive(Debug)]
pub(crate) struct GuardWrites {
    guard: Arc<Guard>,
    keys: Vec<Bytes>,
    bytes: usize,
    /// Keys `..begun` were cancelled ([`GuardWrites::begin`]).
    begun: usize,
    /// Every key is written (a flush, or more keys than the bound).
    all: bool,
    all_begun: bool,
    /// Keys beyond the bound whose leases are not deleted in Redis yet.
    overflow: Vec<Bytes>,
}

impl GuardWrites {
    pub(crate) fn new(guard: Arc<Guard>) -> Self {
        Self {
            guard,
            keys: Vec::new(),
            bytes: 0,
            begun: 0,
            all: false,
            all_begun: false,
            overflow: Vec::new(),
        }
    }

    /// Writes of every key whose cancellation is done elsewhere (a tag
    /// invalidation: its script deletes the leases): only released.
    pub(crate) fn all_begun(guard: Arc<Guard>) -> Self {
        let mut g = Self::new(guard);
        g.all = true;
        g.all_begun = true;
        g
    }

    /// Records a write of `key` (a guarded key).
    pub(crate) fn add(&mut self, key: &[u8]) {
        if !self.remember(key) {
            // Not remembered for the release (which then covers every
            // key), but its lease is still deleted in Redis before the
            // write runs.
            self.overflow.push(Bytes::copy_from_slice(key));
        }
    }

    /// Remembers `key` for the release; `false` when it is beyond the
    /// bound (the release then covers every key).
    fn remember(&mut self, key: &[u8]) -> bool {
        if self.keys.iter().any(|k| k[..] == *key) {
            return true;
        }
        if self.all || self.keys.len() >= MAX_KEYS || self.bytes + key.len() > MAX_KEY_BYTES {
            self.all = true;
            return false;
        }
        self.bytes += key.len();
        self.keys.push(Bytes::copy_from_slice(key));
        true
    }

    /// Records a write of every key.
    pub(crate) fn add_all(&mut self) {
        self.all = true;
    }

    /// The writes recorded since the last call are about to be forwarded:
    /// cancels their leases in this proxy ([`Guard::cancel`]) and returns
    /// the keys to delete in Redis before they run ([`Guard::cancel_keys`]).
    pub(crate) fn begin(&mut self) -> Vec<Bytes> {
        let fresh = &self.keys[self.begun..];
        for k in fresh {
            self.guard.cancel(k, false);
        }
        let mut leases: Vec<Bytes> = fresh.iter().flat_map(|k| Guard::cancel_keys(k)).collect();
        leases.extend(self.overflow.drain(..).flat_map(|k| Guard::cancel_keys(&k)));
        self.begun = self.keys.len();
        if self.all && !self.all_begun {
            self.guard.cancel_all();
            self.all_begun = true;
        }
        leases
    }

    /// Writes queued in a transaction: the keys recorded beyond the bound
    /// since the last call are cancelled now, in this proxy and (the
    /// returned keys, [`Guard::cancel_keys`]) in Redis before the queued
    /// command is forwarded, since they will not be known any more when
    /// `EXEC` is ([`GuardWrites::begin`] then covers every key in this
    /// proxy only). A filler granted a lease between this and `EXEC` read
    /// the database after the write was sent, as for a write whose lease
    /// deletion Redis reads separately.
    pub(crate) fn take_overflow(&mut self) -> Vec<Bytes> {
        let overflow = std::mem::take(&mut self.overflow);
        for k in &overflow {
            self.guard.cancel(k, false);
        }
        overflow
            .iter()
            .flat_map(|k| Guard::cancel_keys(k))
            .collect()
    }

    /// Drops the stale copies of the written keys again, while the writes
    /// may still be running ([`Guard::recheck`]).
    pub(crate) fn touch(&self) {
        if self.all {
            self.guard.recheck_all();
        } else {
            self.keys.iter().for_each(|k| self.guard.recheck(k));
        }
    }

    /// Takes `other`'s keys (both already begun) so that they are released
    /// with these.
    pub(crate) fn absorb(&mut self, mut other: GuardWrites) {
        if other.all {
            self.all = true;
        }
        // Begun already (their leases deleted in Redis): only remembered
        // for the release, never queued for deletion again.
        for k in std::mem::take(&mut other.keys) {
            self.remember(&k);
        }
        other.overflow.clear();
        // Everything here was begun: keys beyond the bound were cancelled
        // already, so `all` only widens what is dropped on release.
        self.begun = self.keys.len();
        self.all_begun = self.all;
        other.all = false;
    }
}

/// Released (answered, or never to be): stale copies read meanwhile are
/// dropped and held readers woken ([`Guard::written`]).
impl Drop for GuardWrites {
    fn drop(&mut self) {
        if self.all {
            self.guard.written_all();
        } else {
            self.keys.iter().for_each(|k| self.guard.written(k));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::policy::metrics::MechanismMetrics;
    use crate::upstream::Pool;

    fn guard() -> Arc<Guard> {
        let config = Arc::new(
            crate::ProxyConfig::builder()
                .upstream("redis://127.0.0.1:1")
                .build()
                .unwrap(),
        );
        // Lazy connections: never opened here.
        let pool = Pool::spawn(&config, &Arc::new(crate::metrics::Metrics::new()));
        Arc::new(Guard::new(pool, Arc::new(MechanismMetrics::default()), 7))
    }

    #[tokio::test]
    async fn keys_are_bounded_and_begun_once() {
        let g = guard();
        let mut w = GuardWrites::new(Arc::clone(&g));
        w.add(b"a");
        w.add(b"a");
        w.add(b"b");
        let cancel = w.begin();
        // Lease and fresh set of each key, each key once.
        assert_eq!(cancel.len(), 4);
        assert!(w.begin().is_empty(), "begun twice");
        for i in 0..(MAX_KEYS + 10) {
            w.add(format!("k{i}").as_bytes());
        }
        assert!(w.all && w.keys.len() <= MAX_KEYS);
        // Beyond the bound: every lease of this proxy is cancelled, once,
        // and every key's lease is deleted in Redis, remembered or not.
        let cancel = w.begin();
        assert_eq!(cancel.len(), 2 * (MAX_KEYS + 10));
        assert!(w.all_begun && w.overflow.is_empty());
        assert!(w.begin().is_empty(), "overflow begun twice");
        // Queued in a transaction: the overflow is cancelled at once.
        w.add(b"late");
        assert_eq!(w.take_overflow().len(), 2);
        assert!(w.take_overflow().is_empty());
        let mut big = GuardWrites::new(g);
        big.add(&vec![b'x'; MAX_KEY_BYTES + 1]);
        assert!(big.all && big.keys.is_empty());
        assert_eq!(big.begin().len(), 2);
        // Absorbed writes were begun: nothing more to cancel, and nothing
        // kept beyond the bound however many are absorbed.
        let mut held = GuardWrites::new(Arc::clone(&w.guard));
        held.absorb(big);
        assert!(held.all && held.all_begun && held.begin().is_empty());
        for i in 0..(2 * MAX_KEYS) {
            let mut one = GuardWrites::new(Arc::clone(&w.guard));
            one.add(format!("h{i}").as_bytes());
            one.begin();
            held.absorb(one);
        }
        assert!(held.keys.len() <= MAX_KEYS && held.overflow.is_empty());
        assert!(held.begin().is_empty());
    }
}
