//! The near cache's hooks into the live path (the mechanism is in
//! [`crate::near`]): reads of near-cached rules, and the write bookkeeping
//! that keeps it coherent with writes through the proxy.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::commands::{self, Kind};
use super::{Guarded, Live, Plan};
use crate::config::ProxyConfig;
use crate::near::{Fill, Lookup, Near, WriteMarks};
use crate::policy::{Policy, Rule};
use crate::resp::Command;
use crate::stampede::marks::GuardWrites;
use crate::upstream::{Lane, Reply};

impl Live {
    /// Starts the near cache (idle until a policy names one), and records
    /// the pool's database ([`Live::pool_db`]).
    pub(crate) fn with_near(mut self, config: &ProxyConfig) -> Self {
        self.pool_db = config.upstream.db;
        self.near = Some(Near::start(
            config,
            self.policy.clone(),
            Arc::clone(&self.hot),
            Arc::clone(&self.metrics),
        ));
        self
    }

    /// A `GET` of a rule with `near_cache`: a hit, a fill, or `None` to plan
    /// it as usual.
    pub(super) fn near_read(
        &self,
        policy: &Arc<Policy>,
        rule: &Rule,
        cmd: &Command<'_>,
        key: &[u8],
        freq: u32,
    ) -> Option<Plan> {
        let near = self.near.as_ref()?;
        if cmd.len() != 2 || !cmd.is(b"GET") {
            return None;
        }
        match near.lookup(policy, rule, key, freq) {
            Lookup::Hit(reply) => Some(Plan::Ready(reply)),
            // The stampede guard owns misses of its keys (a shared fill
            // would hand a nil to every collapsed reader at once); the
            // miss's ticket, taken now, before the guard sends its `GET`,
            // lets the guard offer the value it reads to the cache.
            Lookup::Miss(fill) if let Some(st) = &rule.stampede => Some(Plan::Guarded(Guarded {
                key: Bytes::copy_from_slice(key),
                policy: *st,
                near: Some(fill),
            })),
            Lookup::Miss(fill) => Some(Plan::NearFill(fill)),
            Lookup::Bypass => None,
        }
    }

    /// Runs a near-cache fill for `frame` (the `GET`) on the client's lane.
    pub(crate) fn near_fill(
        &self,
        frame: Bytes,
        fill: Fill,
        lane: &Lane,
    ) -> oneshot::Receiver<Reply> {
        match &self.near {
            Some(near) => near.fill(frame, fill, lane),
            None => {
                // Unreachable: fills are only planned with a near cache.
                let (tx, rx) = oneshot::channel();
                drop(tx);
                rx
            }
        }
    }

    /// Before a write planned on the shared path is forwarded: drops the
    /// near-cached entries of its keys and records them in `marks`, which
    /// travel with its batch and are handed to
    /// [`near_acknowledge`](Self::near_acknowledge) with Redis's answer.
    pub(crate) fn near_write(&self, cmd: &Command<'_>, marks: &mut WriteMarks) {
        let Some(near) = &self.near else {
            return;
        };
        match commands::kind(cmd) {
            Kind::WriteKey => near.begin_write(cmd.arg(1).unwrap_or_default(), marks),
            Kind::WriteKeys => commands::for_each_written(cmd, |k| near.begin_write(k, marks)),
            Kind::Script | Kind::Flush | Kind::WriteUnknown => near.begin_write_all(marks),
            Kind::Neutral | Kind::ReadKey | Kind::ReadMany => {}
        }
    }

    /// Before a write to keys not known here (a tag invalidation script):
    /// the near cache is flushed, and every stale copy of the stampede
    /// guard is dropped again when `marks` are released.
    pub(crate) fn near_write_all(&self, marks: &mut WriteMarks) {
        if let Some(near) = &self.near {
            near.begin_write_all(marks);
        }
        if self.policy.load().has_stampede() {
            // Begun by `tag_invalidated`; the script deletes the leases.
            let g = GuardWrites::all_begun(Arc::clone(&self.guard));
            marks.guard = Some(Box::new(g));
        }
    }

    /// Redis answered the writes `marks` describes; called before the
    /// client sees the answer.
    pub(crate) fn near_acknowledge(&self, marks: WriteMarks) {
        if let Some(near) = &self.near
            && !marks.is_empty()
        {
            near.acknowledge(marks);
        }
    }
}
