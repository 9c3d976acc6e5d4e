//! The stampede guard: when a guarded key is missing, one client is sent to
//! the database and everyone else waits (bounded) for its fill.
//!
//! After Facebook's memcache leases (Nishtala et al., NSDI 2013), done in
//! the proxy so clients need no change:
//!
//! - **Lease.** A `GET` of a guarded key that finds nothing joins the key's
//!   *room* in this proxy. One task per room (the driver) runs
//!   [`scripts::ACQUIRE`]: the key's value if it is there by now, otherwise
//!   `SET nexus:lease:<key> <token> NX PX <lock_ttl>`. The lease lives in
//!   Redis, so across any number of proxies in front of one Redis exactly one
//!   reader at a time holds it. The oldest reader in the room gets the lease
//!   and the nil: it is the *filler*. The others are held.
//! - **Fill.** The filler's `SET` of the key (recognised by its connection
//!   and the lease this proxy recorded for it) runs as [`scripts::FILL`]: it
//!   is written only while the lease still holds the filler's token, and
//!   releases the lease. The room's driver is woken at once and reads the
//!   value for every held reader; fills made through another proxy (or
//!   straight to Redis) are seen by the driver's polling, every
//!   `wait_timeout / 20` clamped to 1..=20 ms.
//! - **Bounds.** A held reader waits at most `wait_timeout`, then gets the nil
//!   (as without the guard). If the filler disconnects or never fills, its
//!   lease expires after `lock_ttl` and the driver's next attempt hands a new
//!   lease to the oldest held reader. At most `max_waiters` readers are held
//!   per key; more get the nil at once.
//! - **Cancellation.** Every other write of a guarded key through the proxy
//!   (`SET` from another connection, `DEL`, `MSET`, `RENAME`, `COPY`, a
//!   script declaring the key, `FLUSHALL`, a write on a pinned connection,
//!   ...) deletes the key's lease in Redis right before it runs
//!   ([`Guard::cancel`], then [`Guard::written`] once it ran), and
//!   `NEXUS.INVALIDATE` deletes the leases of the tag's keys
//!   ([`scripts::INVALIDATE_TAG`]); each deletes the key's lease and its
//!   *fresh set* (the tokens granted since the key's last invalidation). A
//!   late fill then finds its token in neither and is not written: its `SET`
//!   is answered nil, like a `SET ... NX` that did not write. A fill whose
//!   lease merely expired (token still fresh) is written as an ordinary
//!   write ([`scripts::FILL`]).
//! - **Early refresh.** With `early_refresh` (XFetch `beta`), a guarded `GET`
//!   is sent with `PTTL` in the same batch; a hit decides with
//!   [`xfetch::fires`], using the key's measured refill time, whether to take
//!   the lease ahead of expiry. The one reader that gets it is answered nil;
//!   everybody else keeps getting the value.
//! - **Stale while revalidate.** With `serve_stale_for`, hits keep a copy of
//!   the reply ([`table`] bounds it); while a refill is in progress, readers
//!   other than the one held as the next filler get the copy at once, if
//!   Redis returned it at most `serve_stale_for` ago. Deletions and writes
//!   through the proxy drop the key's copy; a tag invalidation drops all.
//! - **Generations.** Each of those invalidations moves the key's generation
//!   on ([`table`]). A value read by a `GET` or the driver sent before one is
//!   not kept as the stale copy, and the driver's value goes only to held
//!   readers that joined with no invalidation since its read was sent; it
//!   reads again for the others (still within `wait_timeout`).

mod driver;
pub(crate) mod marks;
pub(crate) mod scripts;
mod table;
mod xfetch;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::live::scripts::Script;
use crate::policy::StampedePolicy;
use crate::policy::metrics::MechanismMetrics;
use crate::resp::{Limits, Scanner, encode};
use crate::upstream::{Batch, Lane, Pool, Reply};
use table::{Held, Lease, Table, Waiter};

pub(crate) static ACQUIRE_SCRIPT: Script = Script::new(scripts::ACQUIRE);
pub(crate) static FILL_SCRIPT: Script = Script::new(scripts::FILL);
pub(crate) static RELEASE_SCRIPT: Script = Script::new(scripts::RELEASE);
pub(crate) static GRANT_SCRIPT: Script = Script::new(scripts::GRANT);

/// A RESP2 nil (unpinned clients speak RESP2).
pub(crate) const NIL: &[u8] = b"$-1\r\n";

/// The guard of one proxy.
#[derive(Debug)]
pub(crate) struct Guard {
    table: Table,
    pool: Pool,
    metrics: Arc<MechanismMetrics>,
    /// Distinguishes this proxy's lease tokens from other proxies'.
    id: u64,
    tokens: AtomicU64,
}

/// How a missing read is answered.
enum Join {
    Wait(oneshot::Receiver<Held>, Option<Arc<Notify>>),
    Stale(Bytes),
    Overflow,
}

impl Guard {
    pub(crate) fn new(pool: Pool, metrics: Arc<MechanismMetrics>, id: u64) -> Self {
        Self {
            table: Table::new(),
            pool,
            metrics,
            id,
            tokens: AtomicU64::new(0),
        }
    }

    /// The lease key of `key`.
    pub(crate) fn lease_key(key: &[u8]) -> Bytes {
        let prefix = scripts::lease_prefix!().as_bytes();
        let mut k = BytesMut::with_capacity(prefix.len() + key.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(key);
        k.freeze()
    }

    /// The fresh set of `key` (see [`scripts::FILL`]).
    pub(crate) fn fresh_key(key: &[u8]) -> Bytes {
        let prefix = scripts::fresh_prefix!().as_bytes();
        let mut k = BytesMut::with_capacity(prefix.len() + key.len());
        k.extend_from_slice(prefix);
        k.extend_from_slice(key);
        k.freeze()
    }

    /// What a write of `key` deletes in Redis right before it runs, so that
    /// a fill of a lease granted before it is not written: the lease and
    /// the fresh set.
    pub(crate) fn cancel_keys(key: &[u8]) -> [Bytes; 2] {
        [Self::lease_key(key), Self::fresh_key(key)]
    }

    fn token(&self) -> Bytes {
        let n = self.tokens.fetch_add(1, Relaxed);
        Bytes::from(format!("{:016x}:{n}", self.id))
    }

    /// Sends a guarded `GET key` on `lane` now (so Redis runs it in the
    /// client's order) and returns where its reply will arrive. The reply is
    /// resolved in a task: a hit is passed on, a miss is held or made the
    /// filler. If the client goes away, the task stops.
    ///
    /// `near` is the key's near-cache miss when its rule has a near cache
    /// (its ticket taken before this `GET` is sent): a hit answered with
    /// the value this `GET` read is offered to it, before the client sees
    /// it. Nothing else is: not nil (the filler's), not errors, not stale
    /// copies, and not values held readers get from the room's driver (whose
    /// read may have been sent before this reader's ticket; their fill, a
    /// write, moved the key's version past it anyway).
    pub(crate) async fn get(
        self: &Arc<Self>,
        key: Bytes,
        policy: StampedePolicy,
        client: u64,
        random: u64,
        lane: &Lane,
        near: Option<crate::near::Offer>,
    ) -> oneshot::Receiver<Reply> {
        let mut req = BytesMut::new();
        encode::command(&mut req, &[b"GET", &key]);
        let count = if policy.early_refresh.is_some() {
            encode::command(&mut req, &[b"PTTL", &key]);
            2
        } else {
            1
        };
        // Before the GET is sent: a hit is kept as the stale copy only if no
        // invalidation came in between.
        let sent = self.table.generation(&key);
        let (batch_tx, batch_rx) = oneshot::channel();
        lane.send(Batch {
            bytes: req.freeze(),
            count,
            reply: batch_tx,
            // Counted by the client's writer (the guard may answer instead).
            gets: crate::client::Gets::new(),
        })
        .await;
        let (mut tx, rx) = oneshot::channel();
        let guard = Arc::clone(self);
        let lane = lane.clone();
        tokio::spawn(async move {
            let resolve = async {
                let reply = batch_rx.await.unwrap_or_else(|_| Reply {
                    bytes: Bytes::new(),
                    failure: Some((count, crate::error::UpstreamError::ConnectionLost)),
                });
                guard
                    .resolve(reply, &key, &policy, client, random, &lane, sent)
                    .await
            };
            let (out, read) = tokio::select! {
                out = resolve => out,
                () = tx.closed() => return,
            };
            if read && let Some(near) = near {
                near.offer(&out.bytes);
            }
            let _ = tx.send(out);
        });
        rx
    }

    /// The client's reply, and whether it is the value this reader's own
    /// `GET` read (a hit passed on as is). `sent`: the key's generation
    /// when the `GET` was sent.
    #[allow(clippy::too_many_arguments)]
    async fn resolve(
        self: &Arc<Self>,
        reply: Reply,
        key: &Bytes,
        policy: &StampedePolicy,
        client: u64,
        random: u64,
        lane: &Lane,
        sent: u64,
    ) -> (Reply, bool) {
        let first_len = Scanner::new(Limits::default())
            .scan(&reply.bytes)
            .ok()
            .flatten();
        let Some(n) = first_len else {
            // Not even the GET's reply arrived: one error for the one command.
            let err = reply
                .failure
                .map_or(crate::error::UpstreamError::ConnectionLost, |(_, e)| e);
            let reply = Reply {
                bytes: Bytes::new(),
                failure: Some((1, err)),
            };
            return (reply, false);
        };
        let first = reply.bytes.slice(..n);
        let pttl = crate::live::scripts::integer(&reply.bytes[n..]);
        let mut read = false;
        let bytes = if first[..] == *NIL {
            self.miss(key, policy, client).await
        } else if first.starts_with(b"$") {
            if policy.serve_stale_for.is_some() {
                self.table.remember(key, &first, Instant::now(), sent);
            }
            match (policy.early_refresh, pttl) {
                (Some(beta), Some(pttl))
                    if self
                        .early(key, policy, beta, pttl, client, random, lane)
                        .await =>
                {
                    Bytes::from_static(NIL)
                }
                _ => {
                    read = true;
                    first
                }
            }
        } else {
            first
        };
        let reply = Reply {
            bytes,
            failure: None,
        };
        (reply, read)
    }

    /// XFetch: whether this hit takes the lease and refreshes the key early.
    #[allow(clippy::too_many_arguments)]
    async fn early(
        &self,
        key: &Bytes,
        policy: &StampedePolicy,
        beta: f64,
        pttl: i64,
        client: u64,
        random: u64,
        lane: &Lane,
    ) -> bool {
        let now = Instant::now();
        let delta = self
            .table
            .with(key, |e| if e.lease_live(now) { None } else { e.refill })
            .flatten();
        let Some(delta) = delta else {
            return false;
        };
        if !xfetch::fires(pttl, delta, beta, random) {
            return false;
        }
        let token = self.token();
        let [lease_key, fresh_key] = Self::cancel_keys(key);
        let ms = millis(policy.lock_ttl).to_string();
        let fresh_ms = fresh_millis(policy).to_string();
        let reply = GRANT_SCRIPT
            .call(
                lane,
                &[&lease_key, &fresh_key],
                &[&token, ms.as_bytes(), fresh_ms.as_bytes()],
            )
            .await;
        if reply[..] != *b":1\r\n" {
            return false;
        }
        let now = Instant::now();
        let lease = Lease::new(token.clone(), client, now, policy.lock_ttl);
        if self.table.with_new(key, |e| e.grant(lease)).is_none() {
            RELEASE_SCRIPT
                .call(lane, &[&lease_key, &fresh_key], &[&token])
                .await;
            return false;
        }
        self.metrics.leases_taken.fetch_add(1, Relaxed);
        self.metrics.early_refreshes.fetch_add(1, Relaxed);
        true
    }

    /// A miss: stale copy, held until the fill, or made the filler.
    async fn miss(self: &Arc<Self>, key: &Bytes, policy: &StampedePolicy, client: u64) -> Bytes {
        let now = Instant::now();
        let max = policy.max_waiters.get() as usize;
        let join = self
            .table
            .with_new(key, |e| {
                if let Some(age) = policy.serve_stale_for
                    && (e.lease_live(now) || !e.waiters.is_empty())
                    && let Some(frame) = Table::stale(e, age, now)
                {
                    return Join::Stale(frame);
                }
                if e.waiters.len() >= max {
                    return Join::Overflow;
                }
                let (tx, rx) = oneshot::channel();
                e.waiters.push_back(Waiter {
                    tx,
                    client,
                    generation: e.generation,
                });
                let start = e.driver.is_none().then(|| {
                    let wake = Arc::new(Notify::new());
                    e.driver = Some(Arc::clone(&wake));
                    wake
                });
                Join::Wait(rx, start)
            })
            .unwrap_or(Join::Overflow);
        let m = &self.metrics;
        match join {
            Join::Stale(frame) => {
                m.stale_served.fetch_add(1, Relaxed);
                frame
            }
            Join::Overflow => {
                m.held_overflow.fetch_add(1, Relaxed);
                Bytes::from_static(NIL)
            }
            Join::Wait(rx, start) => {
                if let Some(wake) = start {
                    tokio::spawn(driver::drive(Arc::clone(self), key.clone(), *policy, wake));
                }
                // `held_now` counts this reader until it is answered (or dropped).
                let _holding = HeldNow::enter(m);
                match tokio::time::timeout(policy.wait_timeout, rx).await {
                    Ok(Ok(Held::Reply(bytes))) => {
                        m.held_readers.fetch_add(1, Relaxed);
                        m.held_filled.fetch_add(1, Relaxed);
                        bytes
                    }
                    Ok(Ok(Held::Lease { waited })) => {
                        if waited {
                            m.held_readers.fetch_add(1, Relaxed);
                            m.held_handed_over.fetch_add(1, Relaxed);
                        }
                        Bytes::from_static(NIL)
                    }
                    Ok(Err(_)) | Err(_) => {
                        m.held_readers.fetch_add(1, Relaxed);
                        m.held_timed_out.fetch_add(1, Relaxed);
                        Bytes::from_static(NIL)
                    }
                }
            }
        }
    }

    /// If this `SET` of `key` by `client` is a fill, the lease it runs under:
    /// `(token, granted)`. It is when `client` holds the key's lease, or held
    /// a lease that expired or was cancelled within `2 × lock_ttl` of its grant
    /// (its late fill, checked against Redis and dropped there). A holder's
    /// `SET` always runs under its own lease, even when a newer lease went
    /// to another reader, so a late fill never fills someone else's lease.
    /// Any other connection's `SET` is an ordinary write (it cancels the
    /// lease, [`Guard::cancel`]): the proxy cannot tell a fill sent on
    /// another connection from a new write.
    pub(crate) fn fill_lease(&self, key: &[u8], client: u64) -> Option<(Bytes, Instant)> {
        let now = Instant::now();
        self.table
            .with(key, |e| {
                e.held_by(client, now).map(|l| (l.token.clone(), l.granted))
            })
            .flatten()
    }

    /// After a fill ran ([`scripts::FILL`]) with `reply`: measures the refill
    /// time, wakes the held readers, counts a dropped fill. A fill that was
    /// written (or failed) used its token up (the script removed it from
    /// the fresh set): the token is forgotten, current or former, so the
    /// holder's later `SET`s are ordinary writes, not fills checked again
    /// against a spent token (and dropped). After a dropped fill, a former
    /// lease is kept: the holder's repeated late fill is dropped too.
    ///
    /// Returns the client's reply: a plain nil for a dropped fill
    /// ([`scripts::FILL_DROPPED`]), otherwise the write's own reply.
    pub(crate) fn filled(&self, key: &[u8], token: &[u8], granted: Instant, reply: Bytes) -> Bytes {
        let now = Instant::now();
        let dropped = reply[..] == *scripts::FILL_DROPPED;
        if dropped {
            self.metrics.late_fills_dropped.fetch_add(1, Relaxed);
        }
        self.table.invalidate(key, |e| {
            if e.lease.as_ref().is_some_and(|l| l.token[..] == *token) {
                e.lease = None;
            }
            if !dropped {
                e.former.retain(|l| l.token[..] != *token);
            }
            if !dropped && !reply.starts_with(b"-") {
                e.refill = Some(now.saturating_duration_since(granted));
            }
            if let Some(wake) = &e.driver {
                wake.notify_one();
            }
        });
        if dropped {
            Bytes::from_static(NIL)
        } else {
            reply
        }
    }

    /// A write of `key` through this proxy, other than its fill, is about
    /// to run (its lease is deleted in Redis right before it): drops the
    /// stale copy and counts a cancelled lease of this proxy. The lease is
    /// kept (not live any more) so that its holder's late fill is still
    /// checked against Redis, and dropped. `set`: the write is a `SET`,
    /// most likely the fill of an application that reads and writes on
    /// different connections: its time since the grant is kept as the
    /// measured refill time (for early refresh).
    pub(crate) fn cancel(&self, key: &[u8], set: bool) {
        let now = Instant::now();
        self.table.invalidate(key, |e| {
            let mut measured = None;
            if let Some(l) = &mut e.lease
                && l.expires > now
            {
                l.expires = now;
                measured = Some(now.saturating_duration_since(l.granted));
                self.metrics.leases_cancelled.fetch_add(1, Relaxed);
            }
            if set && measured.is_some() {
                e.refill = measured;
            }
        });
    }

    /// Every key is about to be written (`FLUSHALL`/`FLUSHDB`, which delete
    /// the leases in Redis too): [`Guard::cancel`] for each.
    pub(crate) fn cancel_all(&self) {
        let now = Instant::now();
        self.table.invalidate_all_with(|e| {
            if let Some(l) = &mut e.lease
                && l.expires > now
            {
                l.expires = now;
                self.metrics.leases_cancelled.fetch_add(1, Relaxed);
            }
        });
    }

    /// A write of `key` ([`Guard::cancel`]) ran and is about to be
    /// acknowledged: drops a stale copy read meanwhile (a `GET` sent after
    /// the cancellation but run by Redis before the write), and wakes the
    /// held readers, who now read the written value (or, after a deletion,
    /// the oldest becomes the filler).
    pub(crate) fn written(&self, key: &[u8]) {
        self.table.invalidate(key, |e| {
            if let Some(wake) = &e.driver {
                wake.notify_one();
            }
        });
    }

    /// Drops `key`'s stale copy again (a write of it may be running):
    /// [`Guard::written`] without waking anyone.
    pub(crate) fn recheck(&self, key: &[u8]) {
        self.table.invalidate(key, |_| {});
    }

    /// [`Guard::recheck`] for every key.
    pub(crate) fn recheck_all(&self) {
        self.table.invalidate_all();
    }

    /// [`Guard::written`] for every key.
    pub(crate) fn written_all(&self) {
        self.table.invalidate_all_with(|e| {
            if let Some(wake) = &e.driver {
                wake.notify_one();
            }
        });
    }

    /// A tag invalidation (keys unknown here): every stale copy is dropped.
    pub(crate) fn tag_invalidated(&self) {
        self.table.invalidate_all();
    }
}

/// How long a key's fresh set lives after a grant: longer than a former
/// lease is remembered in the proxy ([`table::Lease::until`]).
pub(crate) fn fresh_millis(policy: &StampedePolicy) -> u64 {
    millis(policy.lock_ttl).saturating_mul(3)
}

/// `d` in whole milliseconds, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Keeps [`MechanismMetrics::held_now`] up while a reader is held.
struct HeldNow<'a>(&'a MechanismMetrics);

impl<'a> HeldNow<'a> {
    fn enter(m: &'a MechanismMetrics) -> Self {
        m.held_now.fetch_add(1, Relaxed);
        Self(m)
    }
}

impl Drop for HeldNow<'_> {
    fn drop(&mut self) {
        self.0.held_now.fetch_sub(1, Relaxed);
    }
}
