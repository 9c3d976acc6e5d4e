//! The live mechanisms' hooks for writes on pinned connections (the
//! session's side is [`crate::near::pinned`]): near-cache marks, and the
//! stampede guard's lease cancellations and stale-copy drops.
//!
//! A write outside a transaction is marked when it is forwarded. Writes
//! queued in `MULTI` are only recorded ([`Queued`]): Redis runs them at
//! `EXEC`, so they are marked and their leases cancelled right before
//! `EXEC` is forwarded, and an open transaction holds no pending mark (a
//! fill meanwhile reads the value from before the transaction, which is
//! still current).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::commands::{self, Kind};
use super::{Live, scripts};
use crate::near::WriteMarks;
use crate::resp::{Command, encode};
use crate::stampede::marks::GuardWrites;

/// Keys (and bytes of keys) of a transaction remembered for the near
/// cache; beyond, `EXEC` is marked as a write of every key (the near cache
/// is flushed). Marking more than 8 stripes takes the global pending mark
/// for `EXEC`'s round trip either way.
const QUEUED_KEYS: usize = 256;
const QUEUED_BYTES: usize = 64 * 1024;

/// The writes queued in an open `MULTI`.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// Keys written, for the near cache (at most [`QUEUED_KEYS`] and
    /// [`QUEUED_BYTES`]).
    keys: Vec<Bytes>,
    bytes: usize,
    /// Keys not known or too many: every key.
    all: bool,
    /// The guarded keys written (their own bound).
    guard: Option<Box<GuardWrites>>,
}

impl Queued {
    fn add(&mut self, key: &[u8]) {
        if self.all || self.keys.iter().any(|k| k[..] == *key) {
            return;
        }
        if self.keys.len() < QUEUED_KEYS && self.bytes + key.len() <= QUEUED_BYTES {
            self.bytes += key.len();
            self.keys.push(Bytes::copy_from_slice(key));
        } else {
            self.all = true;
            self.keys = Vec::new();
        }
    }
}

impl Live {
    /// A write on a pinned connection, about to be forwarded: marks it
    /// in `marks` and cancels the leases of the guarded keys it writes in
    /// this proxy. Returns the keys to delete in Redis before it is
    /// forwarded ([`cancel_leases`](Self::cancel_leases)).
    ///
    /// `pool_db`: whether the session is (or may be) in the pool's
    /// database; when it is known to be in another one, its writes cancel
    /// no lease (they still drop near-cache entries: tracking does not
    /// tell databases apart).
    pub(crate) fn pinned_write(
        &self,
        cmd: &Command<'_>,
        marks: &mut WriteMarks,
        pool_db: bool,
    ) -> Vec<Bytes> {
        self.near_write(cmd, marks);
        self.guard_writes(cmd, &mut marks.guard, pool_db);
        marks.guard.as_mut().map(|g| g.begin()).unwrap_or_default()
    }

    /// A write queued in `MULTI`: recorded in `queued`, nothing marked.
    /// Returns the keys to delete in Redis before it is forwarded: the
    /// leases of guarded keys beyond what a transaction remembers
    /// ([`GuardWrites::take_overflow`]), usually none.
    /// `pool_db` as for [`pinned_write`](Self::pinned_write).
    pub(crate) fn pinned_queue(
        &self,
        cmd: &Command<'_>,
        queued: &mut Queued,
        pool_db: bool,
    ) -> Vec<Bytes> {
        match commands::kind(cmd) {
            Kind::WriteKey | Kind::WriteKeys => commands::for_each_written(cmd, |k| queued.add(k)),
            Kind::Script | Kind::Flush | Kind::WriteUnknown => queued.all = true,
            Kind::Neutral | Kind::ReadKey | Kind::ReadMany => {}
        }
        self.guard_writes(cmd, &mut queued.guard, pool_db);
        queued
            .guard
            .as_mut()
            .map(|g| g.take_overflow())
            .unwrap_or_default()
    }

    /// `EXEC` of a transaction that queued `queued` is about to be
    /// forwarded: the marks released with its reply, and the keys to delete
    /// in Redis first (as [`pinned_write`](Self::pinned_write)).
    pub(crate) fn pinned_exec(&self, queued: Queued) -> (WriteMarks, Vec<Bytes>) {
        let mut marks = WriteMarks::new();
        if let Some(near) = &self.near {
            if queued.all {
                near.begin_write_all(&mut marks);
            } else {
                queued
                    .keys
                    .iter()
                    .for_each(|k| near.begin_write(k, &mut marks));
            }
        }
        marks.guard = queued.guard;
        let cancel = marks.guard.as_mut().map(|g| g.begin()).unwrap_or_default();
        (marks, cancel)
    }

    /// Records in `guard` the guarded keys `cmd` writes (not begun).
    /// `pool_db`: false when the session is known to be in another
    /// database, whose keys are not the guarded ones; flushes count either
    /// way (`FLUSHALL` and `SWAPDB` reach the pool's database too).
    fn guard_writes(&self, cmd: &Command<'_>, guard: &mut Option<Box<GuardWrites>>, pool_db: bool) {
        let policy = self.policy.load();
        if !policy.has_stampede() {
            return;
        }
        let new = || Box::new(GuardWrites::new(Arc::clone(&self.guard)));
        match commands::kind(cmd) {
            Kind::WriteKey | Kind::WriteKeys | Kind::Script if pool_db => {
                commands::for_each_written(cmd, |k| {
                    if policy.stampede_for(k).is_some() {
                        guard.get_or_insert_with(new).add(k);
                    }
                });
            }
            Kind::Flush => guard.get_or_insert_with(new).add_all(),
            Kind::WriteKey
            | Kind::WriteKeys
            | Kind::Script
            | Kind::WriteUnknown
            | Kind::Neutral
            | Kind::ReadKey
            | Kind::ReadMany => {}
        }
    }

    /// Deletes `keys` (leases and fresh sets, [`crate::stampede::Guard::cancel_keys`])
    /// in Redis, before a pinned write of their keys is forwarded: a fill
    /// still under way is then dropped.
    pub(crate) async fn cancel_leases(&self, keys: Vec<Bytes>) {
        if keys.is_empty() {
            return;
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + keys.len());
        args.push(b"DEL");
        args.extend(keys.iter().map(|l| &l[..]));
        let mut req = BytesMut::new();
        encode::command(&mut req, &args);
        let reply = scripts::one(self.pool.assign().call(req.freeze(), 1).await);
        if !reply.starts_with(b":") {
            tracing::debug!(reply = %String::from_utf8_lossy(&reply), "lease cancellation failed");
        }
    }
}
