//! The near cache: an in-process cache of `GET` replies for the keys whose
//! policy rule has `near_cache`, kept coherent with Redis.
//!
//! A hit is answered by the client's own task without touching Redis (in
//! the client's reply order, like any local answer). A miss sends the `GET`
//! on the client's lane (concurrent misses of one key share the call) and
//! offers the reply to the cache. On a rule with a stampede guard the
//! guard sends the `GET` instead and offers the value it read through an
//! [`Offer`], under the ticket the miss took before that `GET` was sent.
//!
//! Coherence, the part that matters:
//!
//! - **Writes through the proxy** ([`Near::begin_write`] before they are
//!   forwarded, [`WriteMarks`] dropped once Redis answered them and before
//!   the client sees that answer) drop the key's entry and, through
//!   [`versions`], refuse any fill that could carry a value older than the
//!   write. Read-your-writes holds for every client: no read served after
//!   a write was acknowledged returns the value it replaced. Pinned
//!   sessions release their marks by counting replies ([`pinned`]).
//! - **Writes made directly on Redis** arrive as invalidation pushes on a
//!   dedicated tracking connection ([`tracking`]): RESP3, `CLIENT TRACKING
//!   ON BCAST` with the policy's key prefixes. BCAST fits a proxy that shares
//!   connections: default-mode tracking would remember every key any pool
//!   connection read (Redis memory per key, for keys the near cache does not
//!   even hold) and would need `REDIRECT` from each pool connection;
//!   prefixes cost Redis a radix-tree walk per write and no per-key state.
//! - **No link, no cache.** The cache serves only while the link is
//!   subscribed for the current policy's prefixes. Losing it (or its pings
//!   going unanswered) flushes the cache and turns it off until a new link
//!   is subscribed; `FLUSHALL`/`FLUSHDB` arrive as a null invalidation and
//!   flush it too.
//!
//! Bounds: per rule `max_entries`, `max_bytes`, `max_value_bytes` and `ttl`
//! (max age) ([`store`]); 4,096 coherence stripes ([`versions`]); fills in
//! flight are bounded by the clients' reply queues (one per miss).

mod held;
mod marks;
pub(crate) mod pinned;
mod store;
mod tracking;
pub(crate) mod versions;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::ProxyConfig;
use crate::hotkeys::HotKeys;
use crate::live::scripts;
use crate::policy::metrics::MechanismMetrics;
use crate::policy::{NearAdmission, Policy, PolicyHandle, Rule};
use crate::singleflight::Group;
use crate::upstream::{Lane, Reply};
use store::{Insert, Part};
use versions::{Ticket, Versions};

use marks::MARKS;
pub(crate) use marks::WriteMarks;

/// The near cache of one proxy.
pub(crate) struct Near {
    inner: Arc<Inner>,
    _link: tracking::Link,
}

impl std::fmt::Debug for Near {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Near").finish_non_exhaustive()
    }
}

struct Inner {
    policy: PolicyHandle,
    /// The partitions for the policy the tracking link is subscribed for;
    /// `None` while there is no link (or no near-cache rule).
    stores: ArcSwapOption<Stores>,
    versions: Versions,
    metrics: Arc<MechanismMetrics>,
    hot: Arc<HotKeys>,
    /// Set (for good) when a policy with near-cache rules is first seen,
    /// before any partition exists. Writes planned before it are marked
    /// `unmarked` and flush the cache when acknowledged after it (once).
    used: AtomicBool,
    fills: Group<(Bytes, u64, u64), Bytes>,
}

/// One partition per rule of `policy` (`None` for rules without near cache).
struct Stores {
    policy: Arc<Policy>,
    parts: Box<[Option<Part>]>,
}

impl Stores {
    fn new(policy: Arc<Policy>, metrics: &Arc<MechanismMetrics>) -> Self {
        let parts = policy
            .rules()
            .iter()
            .map(|r| {
                r.near_cache
                    .filter(|_| applies_to_get(r))
                    .map(|nc| Part::new(nc, Arc::clone(metrics)))
            })
            .collect();
        Self { policy, parts }
    }

    fn part_of(&self, rule: &Rule) -> Option<&Part> {
        let i = self
            .policy
            .rules()
            .iter()
            .position(|r| std::ptr::eq(r, rule))?;
        self.parts.get(i)?.as_ref()
    }

    /// The partition a `GET` of `key` would use.
    fn part_for_key(&self, key: &[u8]) -> Option<&Part> {
        let rule = self.policy.match_command(b"GET", key)?;
        self.part_of(rule)
    }

    fn clear(&self) {
        self.parts.iter().flatten().for_each(Part::clear);
    }
}

fn applies_to_get(r: &Rule) -> bool {
    r.enabled
        && r.commands
            .as_ref()
            .is_none_or(|c| c.iter().any(|c| c == "GET"))
}

/// What to do with a `GET` of a near-cached rule.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Answer with this reply.
    Hit(Bytes),
    /// Fetch it and offer the reply to the cache.
    Miss(Fill),
    /// The cache cannot serve or take this read now: treat it as usual.
    Bypass,
}

/// A miss on its way to Redis.
pub(crate) struct Fill {
    stores: Arc<Stores>,
    rule: usize,
    key: Bytes,
    hash: u64,
    ticket: Ticket,
    freq: u32,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// A near-cache miss read by another mechanism (the stampede guard), which
/// offers the reply of the read it sent after the ticket was taken.
pub(crate) struct Offer {
    inner: Arc<Inner>,
    fill: Fill,
}

impl std::fmt::Debug for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Offer")
            .field("fill", &self.fill)
            .finish_non_exhaustive()
    }
}

impl Offer {
    /// Offers `reply`, Redis's answer to a `GET` sent after this miss's
    /// ticket was taken, to the cache: kept only if it is a bulk string
    /// (never nil, never an error) and nothing could have written the key
    /// since the ticket (same check as [`Near::fill`]'s).
    pub(crate) fn offer(self, reply: &[u8]) {
        self.inner.store(&self.fill, reply);
    }
}

impl Near {
    /// Starts the near cache and its tracking link for `policy`.
    pub(crate) fn start(
        config: &ProxyConfig,
        policy: PolicyHandle,
        hot: Arc<HotKeys>,
        metrics: Arc<MechanismMetrics>,
    ) -> Self {
        let inner = Arc::new(Inner {
            policy,
            stores: ArcSwapOption::empty(),
            versions: Versions::new(),
            fills: Group::with_metrics(Arc::clone(&metrics)),
            metrics,
            hot,
            used: AtomicBool::new(false),
        });
        let link = tracking::spawn(Arc::clone(&inner), tracking::LinkConfig::from(config));
        Self { inner, _link: link }
    }

    /// Looks `key` up for a `GET` matched by `rule` of `policy` (the policy
    /// the caller matched with). `freq` is the key's hot-key estimate.
    pub(crate) fn lookup(
        &self,
        policy: &Arc<Policy>,
        rule: &Rule,
        key: &[u8],
        freq: u32,
    ) -> Lookup {
        let inner = &*self.inner;
        let m = &inner.metrics;
        let guard = inner.stores.load();
        let Some(stores) = guard.as_ref().filter(|s| Arc::ptr_eq(&s.policy, policy)) else {
            m.near_cache_misses.fetch_add(1, Relaxed);
            return Lookup::Bypass;
        };
        let Some(rule_index) = policy.rules().iter().position(|r| std::ptr::eq(r, rule)) else {
            return Lookup::Bypass;
        };
        let Some(part) = stores.parts.get(rule_index).and_then(Option::as_ref) else {
            return Lookup::Bypass;
        };
        let hash = hash(key);
        if let Some(v) = part.get(hash, key, Instant::now(), freq) {
            m.near_cache_hits.fetch_add(1, Relaxed);
            return Lookup::Hit(v);
        }
        m.near_cache_misses.fetch_add(1, Relaxed);
        if part.policy.admit == NearAdmission::Hot
            && inner.hot.rate_of_count(freq) < f64::from(part.policy.hot_rate.get())
        {
            return Lookup::Bypass;
        }
        let Some(ticket) = inner.versions.ticket(Versions::stripe_of(hash)) else {
            return Lookup::Bypass;
        };
        Lookup::Miss(Fill {
            stores: Arc::clone(stores),
            rule: rule_index,
            key: Bytes::copy_from_slice(key),
            hash,
            ticket,
            freq,
        })
    }

    /// Sends the `GET` in `frame` on `lane` (or joins an identical fill
    /// started under the same versions) and offers the reply to the cache.
    /// Returns the receiver of the client's reply slot.
    pub(crate) fn fill(&self, frame: Bytes, fill: Fill, lane: &Lane) -> oneshot::Receiver<Reply> {
        let (mut tx, rx) = oneshot::channel();
        let inner = Arc::clone(&self.inner);
        let lane = lane.clone();
        tokio::spawn(async move {
            let key = (frame.clone(), fill.ticket.version, fill.ticket.global);
            let work = {
                let inner = Arc::clone(&inner);
                || async move {
                    let reply = scripts::one(lane.call(frame, 1).await);
                    inner.store(&fill, &reply);
                    reply
                }
            };
            let out = tokio::select! {
                out = inner.fills.run(key, work) => out,
                () = tx.closed() => return,
            };
            let bytes =
                out.map_or_else(|e| Bytes::from(format!("-ERR nexus: {e}\r\n")), |o| o.value);
            let _ = tx.send(Reply {
                bytes,
                failure: None,
            });
        });
        rx
    }

    /// A miss whose `GET` is sent by someone else (the stampede guard): the
    /// returned [`Offer`] takes that `GET`'s reply, with the coherence
    /// ticket `fill` took before it was sent (call this before sending it).
    pub(crate) fn offer_later(&self, fill: Fill) -> Offer {
        Offer {
            inner: Arc::clone(&self.inner),
            fill,
        }
    }

    /// A write to `key` is about to be forwarded; `marks` goes with its batch.
    pub(crate) fn begin_write(&self, key: &[u8], marks: &mut WriteMarks) {
        let inner = &self.inner;
        if !inner.used.load(SeqCst) {
            marks.unmarked = true;
            return;
        }
        let hash = hash(key);
        let stripe = Versions::stripe_of(hash);
        if !marks.all {
            if usize::from(marks.len) < MARKS {
                inner.versions.begin(stripe);
                // STRIPES fits in u16.
                marks.stripes[usize::from(marks.len)] = stripe as u16;
                marks.len += 1;
            } else {
                inner.versions.begin_all();
                marks.all = true;
            }
        }
        marks.inner.get_or_insert_with(|| Arc::clone(inner));
        inner.remove(hash, key);
    }

    /// A write to keys not known here (scripts, `FLUSHDB`, ...) is about to
    /// be forwarded: the whole cache is flushed.
    pub(crate) fn begin_write_all(&self, marks: &mut WriteMarks) {
        let inner = &self.inner;
        if !inner.used.load(SeqCst) {
            marks.unmarked = true;
            return;
        }
        if !marks.all {
            inner.versions.begin_all();
            marks.all = true;
        }
        marks.inner.get_or_insert_with(|| Arc::clone(inner));
        inner.flush_entries();
    }

    /// Redis answered the batch `marks` belongs to; call before the client
    /// sees the answer.
    pub(crate) fn acknowledge(&self, marks: WriteMarks) {
        if marks.unmarked && self.inner.used.load(SeqCst) {
            // Planned before the cache was in use, answered after: the
            // cache may hold a value read before this write. Once per such
            // write, only around the moment the cache is first enabled.
            self.inner.versions.bump_all();
            self.inner.flush_entries();
        }
        drop(marks);
    }
}

impl Inner {
    /// Offers a fill's reply to the cache: bulk strings only (not nil: the
    /// stampede guard and applications must see misses; not errors).
    fn store(&self, fill: &Fill, reply: &[u8]) {
        if !reply.starts_with(b"$") || reply.starts_with(b"$-") {
            return;
        }
        let Some(part) = fill.stores.parts.get(fill.rule).and_then(Option::as_ref) else {
            return;
        };
        let outcome = part.insert(
            fill.hash,
            &fill.key,
            reply,
            Instant::now(),
            fill.freq,
            || self.versions.still_valid(&fill.ticket),
        );
        if outcome == Insert::Stale {
            tracing::trace!("near cache: fill refused (written meanwhile)");
        }
    }

    /// Drops `key`'s entry (after the caller bumped its version).
    fn remove(&self, hash: u64, key: &[u8]) {
        if let Some(stores) = &*self.stores.load()
            && let Some(part) = stores.part_for_key(key)
        {
            part.remove(hash, key);
        }
    }

    /// `key` changed in Redis.
    fn invalidate(&self, key: &[u8]) {
        let hash = hash(key);
        self.versions.bump(Versions::stripe_of(hash));
        self.remove(hash, key);
    }

    /// Drops every entry of the current partitions (the caller bumped the
    /// global version, or holds a global pending mark).
    fn flush_entries(&self) {
        if let Some(stores) = &*self.stores.load() {
            stores.clear();
            self.metrics.near_cache_flushes.fetch_add(1, Relaxed);
        }
    }

    /// Serves `policy` from now on (the link is subscribed for it).
    fn enable(&self, policy: Arc<Policy>) {
        let stores = Stores::new(policy, &self.metrics);
        let capacity: usize = stores
            .parts
            .iter()
            .flatten()
            .map(|p| p.policy.max_bytes.get())
            .sum();
        self.metrics
            .near_cache_capacity_bytes
            .store(capacity as u64, Relaxed);
        self.versions.bump_all();
        let old = self.stores.swap(Some(Arc::new(stores)));
        if let Some(old) = old {
            old.clear();
            self.metrics.near_cache_flushes.fetch_add(1, Relaxed);
        }
        self.metrics.near_cache_tracking_now.store(1, Relaxed);
    }

    /// Stops serving and flushes (the link is gone).
    fn disable(&self) {
        self.metrics.near_cache_tracking_now.store(0, Relaxed);
        self.metrics.near_cache_capacity_bytes.store(0, Relaxed);
        self.versions.bump_all();
        if let Some(old) = self.stores.swap(None) {
            old.clear();
            self.metrics.near_cache_flushes.fetch_add(1, Relaxed);
        }
    }
}

/// FNV-1a: keys are short; picks the stripe (low bits) and shard (high bits).
fn hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    // Spread the high bits too (FNV's are weak for short keys).
    h ^ (h >> 29).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
