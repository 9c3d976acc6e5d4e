//! The cache mechanisms, live in the proxy: policy lookup, default TTLs,
//! singleflight, hot-key tracking and TTL extension, tag scripts, the
//! stampede guard ([`crate::stampede`]).
//!
//! The client reader asks [`Live::plan`] about every forwardable command. The
//! answer keeps the proxy's ordering model intact: plain commands and writes
//! stay in the client's batch (a write's TTL rewrite is spliced into the
//! batch), a collapsible read gets its own reply slot completed by a flight,
//! a tagged write, a filler's write and a deletion of guarded keys are run
//! as one script on the client's own lane before the client's next command
//! is read, and a `GET` of a guarded key gets its own reply slot completed
//! by the stampede guard.
//!
//! Everything here is off when the proxy has no policy: the reader then never
//! calls into this module.

mod commands;
mod near;
mod pinned;
pub(crate) mod scripts;
pub(crate) use pinned::Queued;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Semaphore, oneshot};

use crate::config::PolicySource;
use crate::error::ServeError;
use crate::hotkeys::{
    EXTEND_TTL_SCRIPT, HotKeys, HotKeysConfig, Ticker, Ttl, TtlDecision, TtlExtender,
};
use crate::policy::metrics::MechanismMetrics;
use crate::policy::{HotPolicy, Policy, PolicyHandle, Reloader, StampedePolicy};
use crate::resp::{Command, encode};
use crate::singleflight::Group;
use crate::stampede::{FILL_SCRIPT, Guard};
use crate::tags::script::{TAG, WRITE_AND_TAG};
use crate::upstream::{Lane, Pool, Reply};
use commands::Kind;
use scripts::Script;

/// Flight-generation stripes: a write bumps the stripe of each key it
/// touches, and a read only joins a flight started under the same stripe
/// generation. Bound: fixed, 4,096 counters (32 KiB).
const STRIPES: usize = 4096;
/// Most hot-key TTL extensions running at once; more are skipped (the key
/// stays hot and is extended in a later window).
const MAX_EXTENSIONS: usize = 64;
/// Keys remembered by the once-per-window bookkeeping of TTL extensions.
const EXTENDER_CAPACITY: usize = 65_536;
/// Prefix of the Redis sets holding a tag's keys (same as [`crate::tags::Tagger`]).
pub(crate) const TAG_PREFIX: &[u8] = b"tag:";

pub(crate) static TAG_SCRIPT: Script = Script::new(TAG);
/// `NEXUS.INVALIDATE`: also cancels the leases of the tag's keys.
pub(crate) static INVALIDATE_SCRIPT: Script = Script::new(crate::stampede::scripts::INVALIDATE_TAG);
static WRITE_AND_TAG_SCRIPT: Script = Script::new(WRITE_AND_TAG);
static EXTEND_SCRIPT: Script = Script::new(EXTEND_TTL_SCRIPT);

/// `(command frame, stripe generation, global generation)`: identical frames
/// under the same generations share one upstream call.
type FlightKey = (Bytes, u64, u64);

/// The live mechanisms of one proxy.
pub(crate) struct Live {
    pub(crate) policy: PolicyHandle,
    pub(crate) metrics: Arc<MechanismMetrics>,
    pub(crate) hot: Arc<HotKeys>,
    flights: Group<FlightKey, Bytes>,
    stripes: Box<[AtomicU64]>,
    global: AtomicU64,
    /// Set (for good) before the first read plans a flight. Until then no
    /// flight exists for a write to invalidate, so writes skip the stripe
    /// bump (a locked read-modify-write on every write, measurable on
    /// pipelined SETs). Sequentially consistent with the writes' load: a
    /// write that reads `false` was planned before any flight was, and
    /// flights planned after it are invalidated by the bump of `global`
    /// when the write is acknowledged.
    flights_used: AtomicBool,
    extender: TtlExtender,
    extensions: Arc<Semaphore>,
    rng: AtomicU64,
    /// The stampede guard (idle unless a rule has `stampede`).
    guard: Arc<Guard>,
    /// Numbers client connections (a lease is held by one connection).
    clients: AtomicU64,
    pool: Pool,
    /// The near cache ([`Live::with_near`]); `None` until started.
    near: Option<crate::near::Near>,
    /// The pool's database (the upstream URL's), set by [`Live::with_near`]:
    /// pinned sessions' writes in another database cancel no lease here.
    pub(crate) pool_db: u32,
    _reloader: Option<Reloader>,
    _ticker: Ticker,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("flights", &self.flights)
            .field("hot", &self.hot)
            .finish_non_exhaustive()
    }
}

/// What the reader does with one forwardable command.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Forward unchanged in the batch.
    Plain,
    /// Forward unchanged in the batch; it is a write (its keys' flights are
    /// already invalidated).
    Write,
    /// A `SET`: forward it with `PX <ms>` appended, in the batch.
    AppendPx(u64),
    /// A read that may share an upstream call with identical concurrent reads
    /// planned at the same generations: `stripe` is the key's stripe
    /// generation (for `MGET`, the sum over its keys), `global` the global one.
    Flight { stripe: u64, global: u64 },
    /// A write run as one script on the client's lane ([`Live::run`]); the
    /// reader waits for it before reading the client's next command.
    Script(Call),
    /// A `GET` of a key with a stampede guard ([`Live::guarded_get`]).
    Guarded(Guarded),
    /// Answer with this reply now (a near-cache hit).
    Ready(Bytes),
    /// A near-cache miss: fetch on the client's lane and offer the reply.
    NearFill(crate::near::Fill),
}

/// A write the proxy runs as a script.
#[derive(Debug)]
pub(crate) enum Call {
    /// `WRITE_AND_TAG` (keys: the key, then tag sets; argv: the command,
    /// rewritten with the default TTL when one applies).
    TaggedWrite { keys: Vec<Bytes>, argv: Vec<Bytes> },
    /// A filler's write: `FILL` (keys: the key, its lease and fresh set,
    /// tag sets; argv: the token, then the command as for `TaggedWrite`).
    Fill {
        keys: Vec<Bytes>,
        argv: Vec<Bytes>,
        granted: tokio::time::Instant,
    },
    /// A write of guarded keys that is not a fill: `DEL` of their leases
    /// and fresh sets ([`Guard::cancel_keys`]), then the write, back to
    /// back in one batch on the client's lane (see [`Write`]). `written`:
    /// the guarded keys, `None` for every key (a flush, which deletes the
    /// leases itself).
    Invalidating {
        leases: Vec<Bytes>,
        write: Write,
        written: Option<Vec<Bytes>>,
    },
}

/// How an [`Call::Invalidating`] write is sent.
#[derive(Debug)]
pub(crate) enum Write {
    /// The command, encoded (with its default TTL, if any).
    Command(Bytes),
    /// `WRITE_AND_TAG`, as [`Call::TaggedWrite`].
    Tagged { keys: Vec<Bytes>, argv: Vec<Bytes> },
}

/// A guarded `GET`: its key, the rule's guard, and its near-cache miss when
/// the rule also has a near cache (the guard offers it the value it reads).
#[derive(Debug)]
pub(crate) struct Guarded {
    key: Bytes,
    policy: StampedePolicy,
    near: Option<crate::near::Fill>,
}

impl Live {
    /// Builds the mechanisms for `source` (loading a policy file now).
    pub(crate) async fn start(
        source: &PolicySource,
        pool: Pool,
        metrics: Arc<MechanismMetrics>,
    ) -> Result<Self, ServeError> {
        let (policy, reloader) = match source {
            PolicySource::Rules(p) => (PolicyHandle::new(p.clone()), None),
            PolicySource::Handle(h) => (h.clone(), None),
            PolicySource::File(cfg) => {
                let policy = PolicyHandle::load_file(&cfg.path).await?;
                let handle = PolicyHandle::new(policy);
                let reloader = Reloader::spawn(cfg.clone(), handle.clone(), Arc::clone(&metrics));
                (handle, Some(reloader))
            }
        };
        let hot = Arc::new(HotKeys::with_metrics(
            HotKeysConfig::default(),
            Arc::clone(&metrics),
        ));
        let ticker = hot.spawn_ticker();
        let seed =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), 1u8);
        let guard = Arc::new(Guard::new(
            pool.clone(),
            Arc::clone(&metrics),
            seed.rotate_left(17),
        ));
        Ok(Self {
            policy,
            flights: Group::with_metrics(Arc::clone(&metrics)),
            metrics,
            hot,
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            global: AtomicU64::new(0),
            flights_used: AtomicBool::new(false),
            extender: TtlExtender::new(
                NonZeroUsize::new(EXTENDER_CAPACITY).unwrap_or(NonZeroUsize::MIN),
            ),
            extensions: Arc::new(Semaphore::new(MAX_EXTENSIONS)),
            rng: AtomicU64::new(seed),
            guard,
            clients: AtomicU64::new(1),
            pool,
            near: None,
            pool_db: 0,
            _reloader: reloader,
            _ticker: ticker,
        })
    }

    /// A number for a new client connection (see [`Live::plan`]).
    pub(crate) fn client_id(&self) -> u64 {
        self.clients.fetch_add(1, Ordering::Relaxed)
    }

    /// Decides what happens to `cmd`. `may_join` is false while the client
    /// has writes in flight (its reads then stay in its own ordered batch).
    /// `client` is the connection's [`Live::client_id`].
    pub(crate) fn plan(&self, cmd: &Command<'_>, may_join: bool, client: u64) -> Plan {
        match commands::kind(cmd) {
            Kind::Neutral => Plan::Plain,
            Kind::ReadMany => {
                // `MGET`: collapsed when every key's rule has singleflight.
                let policy = self.policy.load();
                let mut collapse = may_join;
                for k in cmd.args() {
                    self.hot.observe(k);
                    collapse = collapse
                        && policy
                            .match_command(cmd.name(), k)
                            .is_some_and(|r| r.singleflight);
                }
                if !collapse {
                    return Plan::Plain;
                }
                // Before reading the generations: see `flights_used`.
                if !self.flights_used.load(Ordering::SeqCst) {
                    self.flights_used.store(true, Ordering::SeqCst);
                }
                // A write of any of the keys moves its stripe on, so the
                // sum moves on (generations only grow): a read after that
                // write never joins a flight that began before it.
                let stripes = cmd.args().fold(0u64, |sum, k| {
                    sum.wrapping_add(self.stripe(k).load(Ordering::Acquire))
                });
                Plan::Flight {
                    stripe: stripes,
                    global: self.global.load(Ordering::Acquire),
                }
            }
            Kind::ReadKey => {
                let key = cmd.arg(1).unwrap_or_default();
                let policy = self.policy.load();
                let rule = policy.match_command(cmd.name(), key);
                let hot = rule.and_then(|r| r.hot.as_ref());
                let seen = self.hot.observe_due(key, hot.map_or(0, check_every));
                let count = seen.count;
                let Some(rule) = rule else {
                    return Plan::Plain;
                };
                if let Some(h) = hot
                    && seen.due
                {
                    self.maybe_extend(key, count, h);
                }
                // A near-cache hit first; its misses go to the stampede
                // guard when the rule has one, which offers the near cache
                // what it reads (see `near_read`).
                if may_join
                    && rule.near_cache.is_some()
                    && let Some(plan) = self.near_read(&policy, rule, cmd, key, count)
                {
                    return plan;
                }
                if let Some(st) = &rule.stampede
                    && cmd.len() == 2
                    && cmd.is(b"GET")
                {
                    return Plan::Guarded(Guarded {
                        key: Bytes::copy_from_slice(key),
                        policy: *st,
                        near: None,
                    });
                }
                if rule.singleflight && may_join {
                    // Before reading the generations: see `flights_used`.
                    if !self.flights_used.load(Ordering::SeqCst) {
                        self.flights_used.store(true, Ordering::SeqCst);
                    }
                    Plan::Flight {
                        stripe: self.stripe(key).load(Ordering::Acquire),
                        global: self.global.load(Ordering::Acquire),
                    }
                } else {
                    Plan::Plain
                }
            }
            Kind::WriteKey => {
                let key = cmd.arg(1).unwrap_or_default();
                self.invalidate_key(key);
                let policy = self.policy.load();
                if policy.has_stampede()
                    && let Some(plan) = self.plan_guarded_write(&policy, cmd, key, client)
                {
                    return plan;
                }
                self.plan_write(&policy, cmd, key)
            }
            Kind::WriteKeys => {
                commands::for_each_written(cmd, |k| self.invalidate_key(k));
                self.plan_invalidating(cmd).unwrap_or(Plan::Write)
            }
            Kind::Script => {
                self.invalidate_all();
                self.plan_invalidating(cmd).unwrap_or(Plan::Write)
            }
            Kind::Flush => {
                self.invalidate_all();
                if !self.policy.load().has_stampede() {
                    return Plan::Write;
                }
                self.guard.cancel_all();
                Plan::Script(Call::Invalidating {
                    leases: Vec::new(),
                    write: Write::Command(encode_command(cmd, None)),
                    written: None,
                })
            }
            Kind::WriteUnknown => {
                self.invalidate_all();
                Plan::Write
            }
        }
    }

    /// Invalidates flights for the keys `cmd` may write (pinned sessions).
    pub(crate) fn note_command(&self, cmd: &Command<'_>) {
        match commands::kind(cmd) {
            Kind::WriteKey => self.invalidate_key(cmd.arg(1).unwrap_or_default()),
            Kind::WriteKeys => commands::for_each_written(cmd, |k| self.invalidate_key(k)),
            Kind::Script | Kind::Flush | Kind::WriteUnknown => self.invalidate_all(),
            Kind::Neutral | Kind::ReadKey | Kind::ReadMany => {}
        }
    }

    fn plan_write(&self, policy: &Policy, cmd: &Command<'_>, key: &[u8]) -> Plan {
        let Some(rule) = policy.match_command(cmd.name(), key) else {
            return Plan::Write;
        };
        let ms = self.default_ttl_ms(cmd, rule);
        if ms.is_none() && rule.tags.is_empty() {
            return Plan::Write;
        }
        if rule.tags.is_empty()
            && let Some(ms) = ms
        {
            return Plan::AppendPx(ms);
        }
        let mut keys = Vec::with_capacity(1 + rule.tags.len());
        keys.push(Bytes::copy_from_slice(key));
        keys.extend(rule.tags.iter().map(|t| tag_set(t.as_bytes())));
        Plan::Script(Call::TaggedWrite {
            keys,
            argv: argv_with_px(cmd, ms),
        })
    }

    /// The default TTL (ms) `rule` gives this write, if any.
    fn default_ttl_ms(&self, cmd: &Command<'_>, rule: &crate::policy::Rule) -> Option<u64> {
        if cmd.is(b"SET") && cmd.len() >= 3 && !commands::set_has_expiry(cmd) {
            rule.write_ttl(self.random())
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1))
        } else {
            None
        }
    }

    /// A write of a guarded key: the filler's `SET` becomes a fill; any
    /// other write cancels the key's lease ([`Call::Invalidating`]).
    fn plan_guarded_write(
        &self,
        policy: &Policy,
        cmd: &Command<'_>,
        key: &[u8],
        client: u64,
    ) -> Option<Plan> {
        policy.stampede_for(key)?;
        let set = cmd.is(b"SET");
        let rule = policy.match_command(cmd.name(), key);
        let ms = rule.and_then(|r| self.default_ttl_ms(cmd, r));
        let tags = rule.map_or(&[][..], |r| &r.tags[..]);
        let mut keys = vec![Bytes::copy_from_slice(key)];
        if set && let Some((token, granted)) = self.guard.fill_lease(key, client) {
            keys.extend(Guard::cancel_keys(key));
            keys.extend(tags.iter().map(|t| tag_set(t.as_bytes())));
            let mut argv = vec![token];
            argv.extend(argv_with_px(cmd, ms));
            return Some(Plan::Script(Call::Fill {
                keys,
                argv,
                granted,
            }));
        }
        self.guard.cancel(key, set);
        let write = if tags.is_empty() {
            Write::Command(encode_command(cmd, ms))
        } else {
            keys.extend(tags.iter().map(|t| tag_set(t.as_bytes())));
            Write::Tagged {
                keys,
                argv: argv_with_px(cmd, ms),
            }
        };
        let key = Bytes::copy_from_slice(key);
        Some(Plan::Script(Call::Invalidating {
            leases: Guard::cancel_keys(&key).into(),
            write,
            written: Some(vec![key]),
        }))
    }

    /// A write of several keys (or a script declaring keys) naming guarded
    /// keys: cancels their leases ([`Call::Invalidating`]).
    fn plan_invalidating(&self, cmd: &Command<'_>) -> Option<Plan> {
        let policy = self.policy.load();
        if !policy.has_stampede() {
            return None;
        }
        // Not deduplicated: a key named twice is cancelled twice, harmlessly.
        let mut written: Vec<Bytes> = Vec::new();
        commands::for_each_written(cmd, |k| {
            if policy.stampede_for(k).is_some() {
                written.push(Bytes::copy_from_slice(k));
            }
        });
        if written.is_empty() {
            return None;
        }
        for k in &written {
            self.guard.cancel(k, false);
        }
        Some(Plan::Script(Call::Invalidating {
            leases: written.iter().flat_map(|k| Guard::cancel_keys(k)).collect(),
            write: Write::Command(encode_command(cmd, None)),
            written: Some(written),
        }))
    }

    /// Runs a [`Call`] on the client's lane (NOSCRIPT handled) and returns
    /// the reply for the client.
    pub(crate) async fn run(&self, lane: &Lane, call: Call) -> Bytes {
        let reply = self.run_call(lane, call).await;
        // As for a batch holding a write: before the client (and anyone it
        // tells) sees the write acknowledged, no later read joins a flight
        // that may have reached Redis before it.
        self.invalidate_all();
        reply
    }

    async fn run_call(&self, lane: &Lane, call: Call) -> Bytes {
        fn refs(v: &[Bytes]) -> Vec<&[u8]> {
            v.iter().map(|b| &b[..]).collect()
        }
        match call {
            Call::TaggedWrite { keys, argv } => {
                WRITE_AND_TAG_SCRIPT
                    .call(lane, &refs(&keys), &refs(&argv))
                    .await
            }
            Call::Fill {
                keys,
                argv,
                granted,
            } => {
                let reply = FILL_SCRIPT.call(lane, &refs(&keys), &refs(&argv)).await;
                self.guard.filled(&keys[0], &argv[0], granted, reply)
            }
            Call::Invalidating {
                leases,
                write,
                written,
            } => {
                let reply = self.run_invalidating(lane, &leases, write).await;
                // Again after the write ran: a hit read just before it may
                // have stored the old value meanwhile; held readers read
                // the new value now.
                match written {
                    Some(keys) => keys.iter().for_each(|k| self.guard.written(k)),
                    None => self.guard.written_all(),
                }
                reply
            }
        }
    }

    /// `DEL leases` and `write`, back to back in one batch: Redis runs them
    /// in a row (one client's pipelined commands are run together when
    /// they arrive together), and in that order, so the filler's late
    /// `FILL` finds its lease gone whether it runs before the write or
    /// after it.
    async fn run_invalidating(&self, lane: &Lane, leases: &[Bytes], write: Write) -> Bytes {
        let mut del = BytesMut::new();
        if !leases.is_empty() {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + leases.len());
            args.push(b"DEL");
            args.extend(leases.iter().map(|l| &l[..]));
            encode::command(&mut del, &args);
        }
        let before = (!del.is_empty()).then_some(&del[..]);
        match write {
            Write::Command(frame) => match before {
                None => scripts::one(lane.call(frame, 1).await),
                Some(del) => {
                    let mut req = BytesMut::with_capacity(del.len() + frame.len());
                    req.extend_from_slice(del);
                    req.extend_from_slice(&frame);
                    scripts::second(lane.call(req.freeze(), 2).await)
                }
            },
            Write::Tagged { keys, argv } => {
                let keys: Vec<&[u8]> = keys.iter().map(|b| &b[..]).collect();
                let argv: Vec<&[u8]> = argv.iter().map(|b| &b[..]).collect();
                WRITE_AND_TAG_SCRIPT
                    .call_after(lane, before, &keys, &argv)
                    .await
            }
        }
    }

    /// Sends a guarded `GET` on the client's lane and returns the receiver of
    /// its reply slot (see [`crate::stampede`]).
    pub(crate) async fn guarded_get(
        &self,
        g: Guarded,
        client: u64,
        lane: &Lane,
    ) -> oneshot::Receiver<Reply> {
        let near = g
            .near
            .and_then(|fill| Some(self.near.as_ref()?.offer_later(fill)));
        self.guard
            .get(g.key, g.policy, client, self.random(), lane, near)
            .await
    }

    /// A tag invalidation is about to run (`NEXUS.INVALIDATE`): no later read
    /// joins an earlier flight, and no stale copy is served.
    pub(crate) fn tag_invalidated(&self) {
        self.invalidate_all();
        self.guard.tag_invalidated();
    }

    /// Starts (or joins) the flight for `frame` and returns the slot receiver
    /// its reply goes to. The leader's call goes on `lane`, the client's own,
    /// so it is ordered after that client's earlier commands. The flight is
    /// driven by a task tied to the slot: if the client goes away before the
    /// reply, the task stops and a follower takes the flight over.
    pub(crate) fn flight(
        &self,
        frame: Bytes,
        stripe: u64,
        global: u64,
        lane: &Lane,
    ) -> oneshot::Receiver<Reply> {
        let (mut tx, rx) = oneshot::channel();
        let group = self.flights.clone();
        let lane = lane.clone();
        tokio::spawn(async move {
            let key = (frame.clone(), stripe, global);
            let run = group.run(
                key,
                || async move { scripts::one(lane.call(frame, 1).await) },
            );
            let out = tokio::select! {
                out = run => out,
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

    /// Invalidates every flight (tag invalidation, unknown writes).
    pub(crate) fn invalidate_all(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
    }

    fn invalidate_key(&self, key: &[u8]) {
        if !self.flights_used.load(Ordering::SeqCst) {
            return;
        }
        self.stripe(key).fetch_add(1, Ordering::AcqRel);
    }

    fn stripe(&self, key: &[u8]) -> &AtomicU64 {
        // FNV-1a: keys are short; quality only affects false sharing of stripes.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in key {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        &self.stripes[(h as usize) & (STRIPES - 1)]
    }

    fn random(&self) -> u64 {
        // splitmix64 over a shared counter.
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Extends a hot key's TTL per `hot`: the threshold and once-per-window
    /// bookkeeping are decided here; the script reads the TTL and applies the
    /// ceiling atomically in Redis (keys without TTL or missing are left alone).
    /// `count` is the key's estimated count, from its observation.
    fn maybe_extend(&self, key: &[u8], count: u32, hot: &HotPolicy) {
        // Cheap rejection first (no clock read): the rate divisor is at
        // least one detector window, so this bounds the rate from above.
        let bound = f64::from(count) / self.hot.window().as_secs_f64();
        if bound * hot.window.as_secs_f64() < hot.threshold.get() as f64 {
            return;
        }
        // The permit first: `decide` records an `Extend` for the whole
        // window, so an extension it grants must be able to run (with every
        // permit taken, the key is left for a later read to extend).
        let Ok(permit) = Arc::clone(&self.extensions).try_acquire_owned() else {
            return;
        };
        // One clock read for the rate and the extender's window check.
        let now = tokio::time::Instant::now();
        let rate = self.hot.rate_of_count_at(count, now);
        // The TTL is only known inside the script; `ZERO` lets `decide` judge
        // the rate and the window, and the script judges the TTL.
        let decision = self
            .extender
            .decide(key, rate, Ttl::Remaining(Duration::ZERO), hot, now);
        if !matches!(decision, TtlDecision::Extend { .. }) {
            return;
        }
        let lane = self.pool.assign();
        let metrics = Arc::clone(&self.metrics);
        let key = Bytes::copy_from_slice(key);
        let by = hot.extend_by.as_millis().to_string();
        let max = hot.max_ttl.as_millis().to_string();
        tokio::spawn(async move {
            let reply = EXTEND_SCRIPT
                .call(&lane, &[&key], &[by.as_bytes(), max.as_bytes()])
                .await;
            if scripts::integer(&reply).is_some_and(|ms| ms > 0) {
                metrics.ttl_extensions.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
}

/// One access in how many of a listed key under `hot` is checked for a TTL
/// extension ([`HotKeys::observe_due`]): `threshold / 16`. A key is hot when
/// it is read at least `threshold` times per `window`, so while it is hot
/// these accesses take at most `window / 16`, which bounds how much later
/// than at each access its extension can come. A hot key is extended at
/// most once per window anyway, so checking all of its accesses (a clock
/// read and a lookup in the extender's table, each time) buys nothing.
fn check_every(hot: &HotPolicy) -> u16 {
    u16::try_from(hot.threshold.get() / CHECK_DIVISOR).map_or(u16::MAX, |n| n.max(1))
}

/// See [`check_every`].
const CHECK_DIVISOR: u64 = 16;

/// The command's name and arguments, with `PX <ms>` appended if given.
fn argv_with_px(cmd: &Command<'_>, ms: Option<u64>) -> Vec<Bytes> {
    let mut argv: Vec<Bytes> = Vec::with_capacity(cmd.len() + 2);
    argv.push(Bytes::copy_from_slice(cmd.name()));
    argv.extend(cmd.args().map(Bytes::copy_from_slice));
    if let Some(ms) = ms {
        argv.push(Bytes::from_static(b"PX"));
        argv.push(Bytes::from(ms.to_string()));
    }
    argv
}

/// `cmd`, encoded as a RESP array, with `PX <ms>` appended if given.
fn encode_command(cmd: &Command<'_>, ms: Option<u64>) -> Bytes {
    let argv = argv_with_px(cmd, ms);
    let args: Vec<&[u8]> = argv.iter().map(|a| &a[..]).collect();
    let mut out = BytesMut::new();
    encode::command(&mut out, &args);
    out.freeze()
}

/// The Redis set holding `tag`'s keys.
pub(crate) fn tag_set(tag: &[u8]) -> Bytes {
    let mut s = BytesMut::with_capacity(TAG_PREFIX.len() + tag.len());
    s.extend_from_slice(TAG_PREFIX);
    s.extend_from_slice(tag);
    s.freeze()
}

/// Appends `frame` (one complete command) to `out` with `PX <ms>` added:
/// a RESP array gets its count raised by two and the option appended (no
/// re-encoding, no allocation beyond `out`'s growth); an inline command is
/// re-encoded.
pub(crate) fn append_px(out: &mut BytesMut, frame: &[u8], cmd: &Command<'_>, ms: u64) {
    let mut digits = itoa::Buffer::new();
    let ms = digits.format(ms).as_bytes();
    let header_end = frame.iter().position(|&b| b == b'\n');
    match header_end {
        Some(end) if !cmd.is_inline() && frame.first() == Some(&b'*') => {
            encode::header(out, b'*', cmd.len() as u64 + 2);
            out.extend_from_slice(&frame[end + 1..]);
        }
        _ => {
            let mut args: Vec<&[u8]> = Vec::with_capacity(cmd.len());
            args.push(cmd.name());
            args.extend(cmd.args());
            encode::header(out, b'*', cmd.len() as u64 + 2);
            for a in args {
                encode::bulk(out, a);
            }
        }
    }
    encode::bulk(out, b"PX");
    encode::bulk(out, ms);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hot_keys_are_checked_in_proportion_to_the_threshold() {
        let hot = |threshold| HotPolicy {
            threshold: std::num::NonZeroU64::new(threshold).unwrap(),
            window: Duration::from_secs(1),
            extend_by: Duration::from_secs(60),
            max_ttl: Duration::from_secs(600),
        };
        assert_eq!(check_every(&hot(1)), 1);
        assert_eq!(check_every(&hot(31)), 1);
        assert_eq!(check_every(&hot(32)), 2);
        assert_eq!(check_every(&hot(1000)), 62);
        assert_eq!(check_every(&hot(u64::MAX)), u16::MAX);
    }

    #[test]
    fn px_is_appended_to_resp_and_inline_sets() {
        let resp = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let mut out = BytesMut::new();
        append_px(&mut out, resp, &Command::parse(resp).unwrap(), 60_000);
        assert_eq!(
            &out[..],
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$5\r\n60000\r\n"
        );
        let inline = b"set k v\r\n";
        let mut out = BytesMut::new();
        append_px(&mut out, inline, &Command::parse(inline).unwrap(), 7);
        assert_eq!(
            &out[..],
            b"*5\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$1\r\n7\r\n"
        );
    }
}
