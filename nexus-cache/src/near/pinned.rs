//! Near-cache and stampede-guard coherence for writes on pinned connections.
//!
//! A pinned session streams Redis's bytes back unchanged, so there is no
//! reply slot to carry [`WriteMarks`]. Instead its writes are marked (entries
//! dropped, stripes pending, guarded keys' leases cancelled) before they are
//! forwarded, queued with the index of the reply that acknowledges them,
//! and released when the session has received that many replies (counted
//! in the session's [`ReplyStream`]; RESP3 pushes are not replies), before
//! those bytes reach the client. Writes queued inside `MULTI` are only
//! recorded ([`Queued`]): Redis runs them at `EXEC`, so they are marked
//! (and their leases cancelled) right before `EXEC` is forwarded and
//! released with its reply; an open transaction holds no mark.
//!
//! **Uncountable sessions.** Counting assumes one reply per command. After
//! `CLIENT REPLY` (`OFF`/`SKIP` send no reply), a (un)subscription (RESP2
//! answers each channel, and messages are not pushes), `MONITOR`, or a reply
//! stream that cannot be framed, the count means nothing any more. From
//! that command on, the session stops releasing by count: every later write
//! (and every write still waiting, if the stream could not be framed) keeps
//! its marks until the session ends. So those keys get no near-cache fills
//! meanwhile (never a stale one), and the guard drops their stale copies
//! again on every reply chunk. Writes before that command are still
//! released by count (their replies come first). Held marks are bounded
//! by [`HeldMarks`] (256 stripes, then one global pending mark).
//!
//! **The session's database.** Writes of keys cancel the stampede guard's
//! leases only while the session may be in the pool's database: the
//! database is learned from the replies to its `SELECT`s and `RESET`s
//! (matched by count, at most [`MAX_SELECTS`] in flight); while one is
//! unanswered, after a `SELECT` inside `MULTI`, or once replies cannot be
//! counted, it is unknown and taken to be the pool's. Near-cache marks are
//! taken in any database (tracking does not tell databases apart).
//!
//! Bounds: at most [`MAX_QUEUED`] queued entries per session (a further
//! write joins the last entry, which is then released with the later
//! reply); replies are counted without being buffered ([`ReplyStream`]). Marks merged
//! into one queued entry beyond 8 stripes become one global pending mark
//! ([`WriteMarks::absorb`]).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::WriteMarks;
use super::held::HeldMarks;
use crate::live::{Live, Queued};
#[cfg(doc)]
use crate::replies::ReplyStream;
use crate::replies::Unframed;
use crate::resp::Command;

/// Most queued entries of marked writes waiting for their replies in one
/// session.
pub(crate) const MAX_QUEUED: usize = 1024;

/// `SELECT`s (and `RESET`s) waiting for their replies that a session
/// tracks; beyond, its database is unknown until it ends.
const MAX_SELECTS: usize = 16;

/// The database a session's writes run in, as far as the stampede guard
/// is concerned (see [`PinnedWrites::command`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    /// The pool's (the upstream URL's): its writes cancel leases.
    Pool,
    /// Known to be another one: its writes cancel no lease.
    Other,
    /// Not known: treated as the pool's.
    Unknown,
}

/// The marked writes of one pinned session.
pub(crate) struct PinnedWrites {
    state: Mutex<State>,
}

struct State {
    /// Replies the forwarded commands will produce so far.
    sent: u64,
    /// Replies received so far.
    answered: u64,
    /// `(reply index, marks)`: released once `answered > index`.
    queue: VecDeque<(u64, WriteMarks)>,
    /// Inside `MULTI`: the queued writes (marked at `EXEC`).
    multi: Option<Queued>,
    /// Replies cannot be counted any more: the marks of every later write,
    /// held until the session ends.
    held: Option<HeldMarks>,
    /// The reply stream could not be framed: counting stopped.
    broken: bool,
    /// The session's database once every tracked `SELECT` was answered.
    db: Db,
    /// `SELECT`/`RESET`s sent, not answered yet: `(reply index, database
    /// if it succeeds)`; at most [`MAX_SELECTS`].
    selects: VecDeque<(u64, Db)>,
}

impl std::fmt::Debug for PinnedWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedWrites").finish_non_exhaustive()
    }
}

impl State {
    /// Queues `marks`, released with reply `index` (or held).
    fn push(&mut self, index: u64, marks: WriteMarks) {
        if marks.is_empty() {
            return;
        }
        if let Some(held) = &mut self.held {
            held.absorb(marks);
        } else if self.queue.len() < MAX_QUEUED {
            self.queue.push_back((index, marks));
        } else if let Some((last, m)) = self.queue.back_mut() {
            m.absorb(marks);
            *last = index;
        }
    }
}

impl State {
    /// Whether the session's writes may run in the pool's database.
    fn pool_db(&self) -> bool {
        !self.selects.is_empty() || self.db != Db::Other
    }

    /// A `SELECT` or `RESET` (to database `target`) is about to be
    /// forwarded (not inside `MULTI`): the database is learned from its
    /// reply, if replies can be matched to commands.
    fn select(&mut self, index: u64, target: Db) {
        if self.db == Db::Unknown
            || self.held.is_some()
            || self.broken
            || self.selects.len() >= MAX_SELECTS
        {
            // Its reply cannot be told apart (or tracked): unknown for good.
            self.db = Db::Unknown;
            self.selects.clear();
            return;
        }
        self.selects.push_back((index, target));
    }
}

/// The database `SELECT n` moves to, compared with the pool's; a number
/// not written as Redis would accept it is [`Db::Unknown`].
fn select_target(cmd: &Command<'_>, pool_db: u32) -> Db {
    let Some(arg) = cmd.arg(1).filter(|_| cmd.len() == 2) else {
        return Db::Unknown;
    };
    let Some(n) = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| n.to_string().as_bytes() == arg)
    else {
        return Db::Unknown;
    };
    if n == pool_db { Db::Pool } else { Db::Other }
}

impl PinnedWrites {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                sent: 0,
                answered: 0,
                queue: VecDeque::new(),
                multi: None,
                held: None,
                broken: false,
                db: Db::Pool,
                selects: VecDeque::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `cmd` is about to be forwarded. Returns the lease keys to delete in
    /// Redis before it is ([`Live::cancel_leases`]).
    pub(crate) fn command(&self, live: &Live, cmd: &Command<'_>) -> Vec<Bytes> {
        let mut st = self.state();
        let index = st.sent;
        st.sent += 1;
        if st.held.is_none() && crate::route::ends_reply_counting(cmd) {
            st.held = Some(HeldMarks::default());
        }
        if cmd.is(b"MULTI") {
            st.multi.get_or_insert_with(Queued::default);
            return Vec::new();
        }
        if cmd.is(b"EXEC") {
            let Some(queued) = st.multi.take() else {
                return Vec::new();
            };
            let (marks, cancel) = live.pinned_exec(queued);
            st.push(index, marks);
            return cancel;
        }
        if cmd.is(b"RESET") {
            // The queued writes never run; the session is back in database 0.
            st.multi = None;
            let target = if live.pool_db == 0 {
                Db::Pool
            } else {
                Db::Other
            };
            st.select(index, target);
            return Vec::new();
        }
        if cmd.is(b"DISCARD") {
            // The queued writes never run.
            st.multi = None;
            return Vec::new();
        }
        if cmd.is(b"SELECT") {
            if st.multi.is_some() {
                // Runs at `EXEC`, if at all: unknown for good.
                st.db = Db::Unknown;
                st.selects.clear();
            } else {
                let target = select_target(cmd, live.pool_db);
                st.select(index, target);
            }
            return Vec::new();
        }
        let pool_db = st.pool_db();
        if let Some(queued) = &mut st.multi {
            return live.pinned_queue(cmd, queued, pool_db);
        }
        let mut marks = WriteMarks::new();
        let cancel = live.pinned_write(cmd, &mut marks, pool_db);
        st.push(index, marks);
        cancel
    }

    /// A frame forwarded that Redis answers without being a command the
    /// proxy classified (a replacement of `QUIT`, a refused or a `NEXUS.*`
    /// command). Frames the proxy cannot parse are never forwarded.
    pub(crate) fn other(&self) {
        self.state().sent += 1;
    }

    /// The replies in the next chunk Redis sent ([`ReplyStream::feed`]);
    /// releases the marks they acknowledge. Call before the chunk is
    /// written to the client.
    pub(crate) fn replies(&self, live: &Live, fed: Result<&[u8], Unframed>) {
        let mut released = Vec::new();
        {
            let mut st = self.state();
            if let Some(g) = st.held.as_ref().and_then(|h| h.guard.as_ref()) {
                g.touch();
            }
            if st.broken {
                return;
            }
            let Ok(types) = fed else {
                // Cannot count any more: everything waiting is held until
                // the session ends (Redis closes such a connection anyway).
                st.broken = true;
                if !st.selects.is_empty() {
                    st.db = Db::Unknown;
                    st.selects.clear();
                }
                let mut held = st.held.take().unwrap_or_default();
                for (_, m) in st.queue.drain(..) {
                    held.absorb(m);
                }
                st.held = Some(held);
                return;
            };
            for &first in types {
                let index = st.answered;
                st.answered += 1;
                if st.selects.front().is_some_and(|(i, _)| *i == index)
                    && let Some((_, target)) = st.selects.pop_front()
                    && first == b'+'
                {
                    st.db = target;
                }
            }
            while st.queue.front().is_some_and(|(i, _)| *i < st.answered) {
                if let Some((_, m)) = st.queue.pop_front() {
                    released.push(m);
                }
            }
        }
        for m in released {
            live.near_acknowledge(m);
        }
    }
}
