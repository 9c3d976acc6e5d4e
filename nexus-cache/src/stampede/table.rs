//! The guard's per-key state in this proxy: held readers, the lease this
//! proxy's filler holds, the measured refill time and the stale copy.
//!
//! Bounds: 16 shards of at most 1,024 keys (16,384 keys); a full shard
//! evicts an idle entry (no held reader, no lease, current or former,
//! within `2 × lock_ttl` of its grant) and, when it has none, the new key goes
//! unguarded (`held_overflow`). Held readers per key: the rule's
//! `max_waiters`. Former leases per key: [`MAX_FORMER`]. Stale copies: at
//! most [`MAX_STALE_VALUE`] bytes each and [`STALE_BUDGET`] bytes in all;
//! beyond, a value is not kept.
//! Locks are held for a few map operations, never across `.await`.
//!
//! Generations: every invalidation of a key (write, deletion, tag
//! invalidation) moves the key's generation to a fresh, larger number. A
//! read records it before it is sent; its value may be kept or handed to a
//! held reader only while no invalidation came in between. Absent keys share
//! their shard's `floor` (an evicted entry raises it, a new entry starts
//! from it), so a key's generation never returns to an older value; that
//! can only refuse a copy needlessly, never keep an outdated one.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

const SHARDS: usize = 16;
/// Keys per shard.
pub(crate) const KEYS_PER_SHARD: usize = 1024;
/// Largest reply kept as a stale copy (the whole `$n\r\n...\r\n` frame).
pub(crate) const MAX_STALE_VALUE: usize = 512 * 1024;
/// Bytes of stale copies kept in all.
pub(crate) const STALE_BUDGET: usize = 32 * 1024 * 1024;

/// Former leases kept per key (see [`Entry::former`]).
pub(crate) const MAX_FORMER: usize = 4;

/// What a held reader is finally told.
#[derive(Debug)]
pub(crate) enum Held {
    /// The key's reply from Redis (filled value, or an error).
    Reply(Bytes),
    /// The reader now holds the lease and gets the nil: it is the filler.
    /// `waited`: another filler held the lease first (a handover).
    Lease { waited: bool },
}

/// A reader held on a key.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) tx: oneshot::Sender<Held>,
    /// The client connection, so its `SET` is recognised as the fill.
    pub(crate) client: u64,
    /// The key's generation when the reader joined.
    pub(crate) generation: u64,
}

/// A lease this proxy took in Redis for one of its clients.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub(crate) token: Bytes,
    pub(crate) holder: u64,
    pub(crate) granted: Instant,
    pub(crate) expires: Instant,
    /// `granted + 2 × lock_ttl`, unchanged by a cancellation: until then
    /// the holder's late fill is still recognised as its own.
    pub(crate) until: Instant,
}

impl Lease {
    /// A lease granted to `holder` at `now` for `lock_ttl`.
    pub(crate) fn new(token: Bytes, holder: u64, now: Instant, lock_ttl: Duration) -> Self {
        Self {
            token,
            holder,
            granted: now,
            expires: now + lock_ttl,
            until: now + lock_ttl * 2,
        }
    }
}

#[derive(Debug)]
struct Stale {
    frame: Bytes,
    seen: Instant,
}

/// One key's state.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    /// Readers held, oldest first; non-empty only while `driver` is set.
    pub(crate) waiters: VecDeque<Waiter>,
    /// Wakes the key's running driver task (none running: `None`).
    pub(crate) driver: Option<Arc<Notify>>,
    /// The lease one of this proxy's clients holds (kept after expiry or
    /// cancellation until its fill arrives or the entry is evicted, so that
    /// late fill is still recognised and checked against Redis).
    pub(crate) lease: Option<Lease>,
    /// Cancelled or expired leases replaced by a newer one of another
    /// holder, kept until their `until` (at most [`MAX_FORMER`]), so a late
    /// fill from their holder runs against its own, gone, token and is
    /// dropped instead of filling the newer lease.
    pub(crate) former: Vec<Lease>,
    /// Last measured time from lease to fill.
    pub(crate) refill: Option<Duration>,
    stale: Option<Stale>,
    /// Moved forward by every invalidation of the key.
    pub(crate) generation: u64,
}

impl Entry {
    /// Whether a lease of this proxy is live at `now`.
    pub(crate) fn lease_live(&self, now: Instant) -> bool {
        self.lease.as_ref().is_some_and(|l| l.expires > now)
    }

    fn idle(&self, now: Instant) -> bool {
        self.driver.is_none() && !self.lease.iter().chain(&self.former).any(|l| l.until > now)
    }

    /// Records `lease` as the key's lease; the one it replaces, if another
    /// client held it, is kept as a former lease.
    pub(crate) fn grant(&mut self, lease: Lease) {
        let now = lease.granted;
        self.former.retain(|l| l.until > now);
        if let Some(old) = self.lease.take()
            && old.holder != lease.holder
            && old.until > now
        {
            if self.former.len() >= MAX_FORMER {
                self.former.remove(0);
            }
            self.former.push(old);
        }
        self.lease = Some(lease);
    }

    /// The lease `client` holds or held (still within its `until`).
    pub(crate) fn held_by(&self, client: u64, now: Instant) -> Option<&Lease> {
        self.lease
            .as_ref()
            .filter(|l| l.holder == client)
            .or_else(|| {
                self.former
                    .iter()
                    .rev()
                    .find(|l| l.holder == client && l.until > now)
            })
    }
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<Bytes, Entry>,
    /// The generation of the shard's absent keys.
    floor: u64,
}

/// The sharded key table.
#[derive(Debug)]
pub(crate) struct Table {
    shards: Box<[Mutex<Shard>]>,
    stale_bytes: AtomicUsize,
    /// Source of fresh generations.
    clock: AtomicU64,
}

impl Table {
    pub(crate) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            stale_bytes: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        &self.shards[(h >> 32) as usize % SHARDS]
    }

    /// Runs `f` on `key`'s entry, if there is one.
    pub(crate) fn with<R>(&self, key: &[u8], f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.map.get_mut(key).map(f)
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `key`'s generation now (record it before sending a read).
    pub(crate) fn generation(&self, key: &[u8]) -> u64 {
        let shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shard.map.get(key).map_or(shard.floor, |e| e.generation)
    }

    /// An invalidation of `key`: moves its generation on, drops its stale
    /// copy, then runs `f` on its entry if there is one.
    pub(crate) fn invalidate(&self, key: &[u8], f: impl FnOnce(&mut Entry)) {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generation = self.tick();
        match shard.map.get_mut(key) {
            Some(e) => {
                e.generation = generation;
                self.forget(e);
                f(e);
            }
            None => shard.floor = generation,
        }
    }

    /// Runs `f` on `key`'s entry, creating it; `None` when the shard is
    /// full of busy entries.
    pub(crate) fn with_new<R>(&self, key: &Bytes, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let shard = &mut *shard;
        if !shard.map.contains_key(key) && shard.map.len() >= KEYS_PER_SHARD {
            let now = Instant::now();
            let victim = shard
                .map
                .iter()
                .find(|(_, e)| e.idle(now))
                .map(|(k, _)| k.clone())?;
            if let Some(e) = shard.map.remove(&victim) {
                shard.floor = shard.floor.max(e.generation);
                self.release_stale(e.stale);
            }
        }
        let floor = shard.floor;
        Some(f(shard.map.entry(key.clone()).or_insert_with(|| Entry {
            generation: floor,
            ..Entry::default()
        })))
    }

    /// Keeps `frame` (a bulk reply just read from Redis by a read sent at
    /// generation `sent`) as `key`'s stale copy, unless the key was
    /// invalidated since.
    pub(crate) fn remember(&self, key: &Bytes, frame: &[u8], now: Instant, sent: u64) {
        if frame.len() > MAX_STALE_VALUE {
            // Too large to keep; the older copy must not be served either.
            self.with(key, |e| self.forget(e));
            return;
        }
        self.with_new(key, |e| self.keep(e, frame, now, sent));
    }

    /// [`Table::remember`] on an entry already locked.
    pub(crate) fn keep(&self, e: &mut Entry, frame: &[u8], now: Instant, sent: u64) {
        if e.generation != sent {
            return;
        }
        if frame.len() > MAX_STALE_VALUE {
            self.forget(e);
            return;
        }
        if let Some(s) = &mut e.stale
            && s.frame[..] == *frame
        {
            s.seen = now;
            return;
        }
        let old = e.stale.take();
        self.release_stale(old);
        let used = self.stale_bytes.fetch_add(frame.len(), Ordering::Relaxed);
        if used + frame.len() > STALE_BUDGET {
            self.stale_bytes.fetch_sub(frame.len(), Ordering::Relaxed);
            return;
        }
        e.stale = Some(Stale {
            frame: Bytes::copy_from_slice(frame),
            seen: now,
        });
    }

    /// `entry`'s stale copy if Redis returned it at most `max_age` before `now`.
    pub(crate) fn stale(entry: &Entry, max_age: Duration, now: Instant) -> Option<Bytes> {
        let s = entry.stale.as_ref()?;
        (now.saturating_duration_since(s.seen) <= max_age).then(|| s.frame.clone())
    }

    /// Drops `entry`'s stale copy.
    pub(crate) fn forget(&self, entry: &mut Entry) {
        let old = entry.stale.take();
        self.release_stale(old);
    }

    /// Invalidates every key (tag invalidation: the keys are not known
    /// here): every generation moves on, every stale copy is dropped.
    pub(crate) fn invalidate_all(&self) {
        self.invalidate_all_with(|_| {});
    }

    /// [`Table::invalidate_all`], then runs `f` on every entry.
    pub(crate) fn invalidate_all_with(&self, mut f: impl FnMut(&mut Entry)) {
        for shard in &self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let generation = self.tick();
            shard.floor = generation;
            for e in shard.map.values_mut() {
                e.generation = generation;
                let old = e.stale.take();
                self.release_stale(old);
                f(e);
            }
        }
    }

    fn release_stale(&self, stale: Option<Stale>) {
        if let Some(s) = stale {
            self.stale_bytes.fetch_sub(s.frame.len(), Ordering::Relaxed);
        }
    }

    /// Keys in the table (tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    /// Bytes of stale copies held (tests).
    #[cfg(test)]
    pub(crate) fn stale_bytes(&self) -> usize {
        self.stale_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_table_is_bounded_and_keeps_busy_entries() {
        let t = Table::new();
        let now = Instant::now();
        // Fill far beyond the bound with idle entries: evicted, never more.
        for i in 0..(SHARDS * KEYS_PER_SHARD * 2) {
            let key = Bytes::from(format!("k{i}"));
            t.with_new(&key, |e| e.refill = Some(Duration::from_millis(1)))
                .unwrap();
        }
        assert!(t.len() <= SHARDS * KEYS_PER_SHARD);
        // A shard full of live leases refuses new keys instead of growing.
        let t = Table::new();
        let mut refused = 0;
        for i in 0..(SHARDS * KEYS_PER_SHARD * 2) {
            let key = Bytes::from(format!("k{i}"));
            let lease = Lease {
                token: Bytes::new(),
                holder: 1,
                granted: now,
                expires: now + Duration::from_secs(60),
                until: now + Duration::from_secs(60),
            };
            if t.with_new(&key, |e| e.grant(lease)).is_none() {
                refused += 1;
            }
        }
        assert!(t.len() <= SHARDS * KEYS_PER_SHARD);
        assert!(refused >= SHARDS * KEYS_PER_SHARD);
    }

    #[tokio::test]
    async fn stale_copies_respect_size_budget_and_age() {
        let t = Table::new();
        let now = Instant::now();
        let key = Bytes::from_static(b"k");
        t.remember(&key, b"$1\r\nv\r\n", now, 0);
        assert_eq!(t.stale_bytes(), 7);
        let max = Duration::from_secs(1);
        let got = t.with(&key, |e| Table::stale(e, max, now)).flatten();
        assert_eq!(got.as_deref(), Some(&b"$1\r\nv\r\n"[..]));
        let later = now + Duration::from_secs(2);
        assert!(
            t.with(&key, |e| Table::stale(e, max, later))
                .flatten()
                .is_none()
        );
        // Replaced, not added.
        t.remember(&key, b"$2\r\nvv\r\n", now, 0);
        assert_eq!(t.stale_bytes(), 8);
        // Too large: not kept, and the older copy is dropped.
        let big = vec![b'x'; MAX_STALE_VALUE + 1];
        t.remember(&key, &big, now, 0);
        assert_eq!(t.stale_bytes(), 0);
        assert!(
            t.with(&key, |e| Table::stale(e, max, now))
                .flatten()
                .is_none()
        );
        // The budget caps the total.
        let value = vec![b'y'; MAX_STALE_VALUE];
        for i in 0..(STALE_BUDGET / MAX_STALE_VALUE + 8) {
            t.remember(&Bytes::from(format!("b{i}")), &value, now, 0);
        }
        assert!(t.stale_bytes() <= STALE_BUDGET);
        t.invalidate_all();
        assert_eq!(t.stale_bytes(), 0);
    }

    #[tokio::test]
    async fn a_read_sent_before_an_invalidation_is_not_kept() {
        let t = Table::new();
        let now = Instant::now();
        let max = Duration::from_secs(60);
        let stale = |t: &Table, key: &Bytes| t.with(key, |e| Table::stale(e, max, now)).flatten();
        for absent in [true, false] {
            let key = Bytes::from_static(b"k");
            if !absent {
                t.remember(&key, b"$2\r\nv0\r\n", now, t.generation(&key));
                assert!(stale(&t, &key).is_some());
            }
            // A hit's GET is sent, a write runs, then the hit's reply arrives.
            let sent = t.generation(&key);
            t.invalidate(&key, |_| {});
            t.remember(&key, b"$2\r\nv1\r\n", now, sent);
            assert!(stale(&t, &key).is_none(), "absent: {absent}");
            // Likewise across a tag invalidation.
            let sent = t.generation(&key);
            t.invalidate_all();
            t.remember(&key, b"$2\r\nv1\r\n", now, sent);
            assert!(stale(&t, &key).is_none(), "absent: {absent}");
            // A read sent after it is kept.
            t.remember(&key, b"$2\r\nv2\r\n", now, t.generation(&key));
            assert_eq!(stale(&t, &key).as_deref(), Some(&b"$2\r\nv2\r\n"[..]));
            let old = t.generation(&key);
            t.invalidate(&key, |_| {});
            assert!(t.generation(&key) > old);
            // The second round runs with the key's entry present.
            assert_eq!(t.len(), 1);
        }
    }
}
