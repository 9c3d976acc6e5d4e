//! Near-cache coherence for writes on pinned connections.
//!
//! A pinned session streams Redis's bytes back unchanged, so there is no
//! reply slot to carry [`WriteMarks`]. Instead its writes are marked (entries
//! dropped, stripes pending) before they are forwarded, queued with the
//! index of the reply that acknowledges them, and released when the session
//! has received that many replies (counted by scanning the reply stream;
//! RESP3 pushes are not replies), before those bytes reach the client.
//! Writes queued inside `MULTI` are released with the reply to `EXEC` or
//! `DISCARD`, since that is when Redis runs them.
//!
//! Bounds: at most [`MAX_QUEUED`] marked writes per session, and one
//! incomplete reply buffered for counting. A write beyond the bound, or any
//! write after the reply stream could not be framed, only drops its entries
//! (again when Redis's invalidation push arrives), without a pending mark.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use bytes::{Buf, BytesMut};

use super::WriteMarks;
use crate::live::Live;
use crate::resp::{Command, Limits, Scanner};

/// Most marked writes waiting for their replies in one session.
pub(crate) const MAX_QUEUED: usize = 1024;

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
    /// Inside `MULTI`: the marks of the queued commands.
    multi: Option<WriteMarks>,
    /// The start of an incomplete reply.
    tail: BytesMut,
    scanner: Scanner,
    /// Counting is lost (unframeable replies): only unmarked invalidation.
    broken: bool,
}

impl std::fmt::Debug for PinnedWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedWrites").finish_non_exhaustive()
    }
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
                broken: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `cmd` is about to be forwarded (it will get one reply).
    pub(crate) fn command(&self, live: &Live, cmd: &Command<'_>) {
        let mut st = self.state();
        let index = st.sent;
        st.sent += 1;
        if st.broken {
            drop(st);
            live.near_note(cmd);
            return;
        }
        if cmd.is(b"MULTI") {
            st.multi.get_or_insert_with(WriteMarks::new);
            return;
        }
        if cmd.is(b"EXEC") || cmd.is(b"DISCARD") {
            if let Some(marks) = st.multi.take() {
                st.queue.push_back((index, marks));
            }
            return;
        }
        let State { multi, queue, .. } = &mut *st;
        match multi {
            Some(marks) => live.near_write(cmd, marks),
            None if queue.len() < MAX_QUEUED => {
                let mut marks = WriteMarks::new();
                live.near_write(cmd, &mut marks);
                if !marks.is_empty() {
                    queue.push_back((index, marks));
                }
            }
            None => {
                drop(st);
                live.near_note(cmd);
            }
        }
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
                        // Cannot count any more: release everything now
                        // (Redis closes such a connection anyway).
                        st.broken = true;
                        st.tail = BytesMut::new();
                        released.extend(st.queue.drain(..).map(|(_, m)| m));
                        released.extend(st.multi.take());
                        break;
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
