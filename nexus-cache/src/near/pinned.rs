//! Near-cache and stampede-guard coherence for writes on pinned connections.
//!
//! A pinned session streams Redis's bytes back unchanged, so there is no
//! reply slot to carry [`WriteMarks`]. Instead its writes are marked (entries
//! dropped, stripes pending, guarded keys' leases cancelled) before they are
//! forwarded, queued with the index of the reply that acknowledges them,
//! and released when the session has received that many replies (counted
//! by scanning the reply stream; RESP3 pushes are not replies), before
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
//! Bounds: at most [`MAX_QUEUED`] queued entries per session (a further
//! write joins the last entry, which is then released with the later
//! reply), and one incomplete reply buffered for counting. Marks merged
//! into one queued entry beyond 8 stripes become one global pending mark
//! ([`WriteMarks::absorb`]).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::{Buf, Bytes, BytesMut};

use super::WriteMarks;
use super::held::HeldMarks;
use crate::live::{Live, Queued};
use crate::resp::{Command, Limits, Scanner};

/// Most queued entries of marked writes waiting for their replies in one
/// session.
pub(crate) const MAX_QUEUED: usize = 1024;

/// Commands after which replies cannot be counted (see the module docs).
const UNCOUNTABLE: &[&[u8]] = &[
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
];

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
    /// The start of an incomplete reply.
    tail: BytesMut,
    scanner: Scanner,
    /// Replies cannot be counted any more: the marks of every later write,
    /// held until the session ends.
    held: Option<HeldMarks>,
    /// The reply stream could not be framed: counting stopped.
    broken: bool,
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

fn uncountable(cmd: &Command<'_>) -> bool {
    UNCOUNTABLE.iter().any(|n| cmd.is(n))
        || (cmd.is(b"CLIENT") && cmd.arg(1).is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY")))
}

impl PinnedWrites {
    pub(crate) fn new() -> Self {
        let limits = Limits {
            max_bulk_len: 1 << 30,
            max_elements: usize::MAX >> 8,
            ..Limits::default()
        };
        Self {
            state: Mutex::new(State {
                sent: 0,
                answered: 0,
                queue: VecDeque::new(),
                multi: None,
                tail: BytesMut::new(),
                scanner: Scanner::new(limits).inline(false),
                held: None,
                broken: false,
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
        if st.held.is_none() && uncountable(cmd) {
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
        if cmd.is(b"DISCARD") || cmd.is(b"RESET") {
            // The queued writes never run.
            st.multi = None;
            return Vec::new();
        }
        if let Some(queued) = &mut st.multi {
            return live.pinned_queue(cmd, queued);
        }
        let mut marks = WriteMarks::new();
        let cancel = live.pinned_write(cmd, &mut marks);
        st.push(index, marks);
        cancel
    }

    /// A frame forwarded that Redis answers without being a command the
    /// proxy classified (a replacement, an unparsable frame).
    pub(crate) fn other(&self) {
        self.state().sent += 1;
    }

    /// Bytes Redis sent; releases the marks they acknowledge. Call before
    /// the bytes are written to the client.
    pub(crate) fn replies(&self, live: &Live, bytes: &[u8]) {
        let mut released = Vec::new();
        {
            let mut st = self.state();
            if let Some(g) = st.held.as_ref().and_then(|h| h.guard.as_ref()) {
                g.touch();
            }
            if st.broken {
                return;
            }
            st.tail.extend_from_slice(bytes);
            loop {
                let State { tail, scanner, .. } = &mut *st;
                match scanner.scan(tail) {
                    Ok(Some(n)) => {
                        let push = tail.first() == Some(&b'>');
                        tail.advance(n);
                        if !push {
                            st.answered += 1;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        // Cannot count any more: everything waiting is held
                        // until the session ends (Redis closes such a
                        // connection anyway).
                        st.broken = true;
                        st.tail = BytesMut::new();
                        let mut held = st.held.take().unwrap_or_default();
                        for (_, m) in st.queue.drain(..) {
                            held.absorb(m);
                        }
                        st.held = Some(held);
                        return;
                    }
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
