//! Which command a pinned connection is running, as far as unblocking goes.
//!
//! `CLIENT UNBLOCK` ends whatever Redis holds the connection in, and Redis
//! 7.0 also counts a command postponed by `CLIENT PAUSE` (as `FAILOVER` and
//! `SHUTDOWN` with replicas pause) as blocked: that command gets
//! `-UNBLOCKED`, then runs anyway once the pause ends and gets a second
//! reply. So a session unblocks only while the oldest command still
//! unanswered is one the client sent that blocks by design
//! ([`is_blocking`]), and at most once per such command. That takes the
//! order of the commands forwarded ([`Blocked::command`]) and a count of
//! the replies received, counted in the session's reply stream
//! ([`Blocked::replies`], from a [`ReplyStream`]; RESP3 pushes are not
//! replies). The count is only
//! current while the reply side waits for Redis; the caller checks that
//! ([`unblock`](super::unblock)).
//!
//! A blocking command that is itself held by the pause (`BLPOP` under
//! `CLIENT PAUSE ... WRITE`) cannot be told apart: it is unblocked too
//! (with `ERROR`, never `TIMEOUT`, which crashes Redis 7.x on such a
//! command). The client gets `-UNBLOCKED`; if the pause ends before the
//! session's connection is closed, the command still runs and its reply
//! follows the error (a known limitation).
//!
//! Commands queued inside `MULTI` do not block (`EXEC` runs them without
//! blocking). A `MULTI` that Redis refuses (an ACL, a nested `MULTI`) is
//! still taken as opening a transaction: the blocking commands after it,
//! which Redis then runs and blocks on, are not unblocked, and the ending
//! session waits for its time to be up, as without unblocking. After `CLIENT REPLY` (`OFF`/`SKIP` send no reply), a
//! (un)subscription (RESP2 answers each channel), `MONITOR`, more than
//! [`MAX_BLOCKING`] blocking commands unanswered, or replies that cannot
//! be framed, replies no longer match commands: the session is *lost* and
//! never unblocks again (it ends when Redis answers, or when its time is
//! up).
//!
//! Bounds: at most [`MAX_BLOCKING`] indexes; replies are counted without
//! being buffered ([`ReplyStream`]).

#[cfg(doc)]
use crate::replies::ReplyStream;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::replies::Unframed;
use crate::resp::Command;
use crate::route::{ends_reply_counting, is_blocking};

/// Most blocking commands awaiting their replies that a session tracks;
/// beyond, it is lost.
pub(in crate::client) const MAX_BLOCKING: usize = 1024;

/// The blocking commands of one pinned session and its reply count.
pub(in crate::client) struct Blocked {
    state: Mutex<State>,
}

struct State {
    /// Replies the forwarded commands will produce so far.
    sent: u64,
    /// Replies received so far.
    answered: u64,
    /// Reply indexes of the blocking commands not answered yet, in order.
    blocking: VecDeque<u64>,
    /// Inside `MULTI`: commands are queued, not run.
    multi: bool,
    /// The reply index of the last command unblocked (`:1`).
    unblocked: Option<u64>,
    /// Replies no longer match commands: never unblock.
    lost: bool,
}

impl std::fmt::Debug for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocked").finish_non_exhaustive()
    }
}

impl Default for Blocked {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                sent: 0,
                answered: 0,
                blocking: VecDeque::new(),
                multi: false,
                unblocked: None,
                lost: false,
            }),
        }
    }
}

impl State {
    fn lose(&mut self) {
        self.lost = true;
        self.blocking = VecDeque::new();
    }
}

impl Blocked {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `cmd` is about to be forwarded unchanged.
    pub(in crate::client) fn command(&self, cmd: &Command<'_>) {
        let mut st = self.state();
        let index = st.sent;
        st.sent += 1;
        if st.lost {
            return;
        }
        if ends_reply_counting(cmd) {
            st.lose();
        } else if cmd.is(b"MULTI") {
            st.multi = true;
        } else if cmd.is(b"EXEC") || cmd.is(b"DISCARD") || cmd.is(b"RESET") {
            st.multi = false;
        } else if !st.multi && is_blocking(cmd) {
            if st.blocking.len() >= MAX_BLOCKING {
                st.lose();
            } else {
                st.blocking.push_back(index);
            }
        }
    }

    /// A frame forwarded that Redis answers once without blocking (a
    /// replacement of a refused or a `NEXUS.*` command).
    pub(in crate::client) fn other(&self) {
        self.state().sent += 1;
    }

    /// Replies no longer match commands (the reply stream was not framed
    /// from its start).
    pub(in crate::client) fn lose(&self) {
        self.state().lose();
    }

    /// Whether replies still match commands (the reply stream need not be
    /// counted for this session otherwise).
    pub(in crate::client) fn counting(&self) -> bool {
        !self.state().lost
    }

    /// The replies in the next chunk Redis sent after the reply to
    /// `CLIENT ID` ([`ReplyStream::feed`]).
    pub(in crate::client) fn replies(&self, fed: Result<&[u8], Unframed>) {
        let mut st = self.state();
        if st.lost {
            return;
        }
        let Ok(types) = fed else {
            st.lose();
            return;
        };
        st.answered += types.len() as u64;
        let answered = st.answered;
        while st.blocking.front().is_some_and(|&i| i < answered) {
            st.blocking.pop_front();
        }
    }

    /// The reply index of the command to unblock now, if any: the oldest
    /// unanswered command, when it blocks and was not unblocked already.
    pub(in crate::client) fn due(&self) -> Option<u64> {
        let st = self.state();
        let head = st.answered;
        (!st.lost && st.blocking.front() == Some(&head) && st.unblocked != Some(head))
            .then_some(head)
    }

    /// Redis unblocked the command with reply index `index`: never again.
    pub(in crate::client) fn unblocked(&self, index: u64) {
        self.state().unblocked = Some(index);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::replies::ReplyStream;

    /// Feeds `bytes` of the reply stream `s` to `b`.
    fn feed(b: &Blocked, s: &mut ReplyStream, bytes: &[u8]) {
        b.replies(s.feed(bytes));
    }

    fn send(b: &Blocked, line: &str) {
        let frame = format!("{line}\r\n");
        b.command(&Command::parse(frame.as_bytes()).unwrap());
    }

    #[test]
    fn only_a_blocking_command_at_the_head_is_due_and_only_once() {
        let b = Blocked::default();
        let mut s = ReplyStream::default();
        send(&b, "INCR n");
        send(&b, "BLPOP l 0");
        send(&b, "GET k");
        send(&b, "BRPOP l 0");
        assert_eq!(b.due(), None, "INCR runs first");
        feed(&b, &mut s, b":1");
        assert_eq!(b.due(), None, "INCR's reply is incomplete");
        feed(&b, &mut s, b"\r\n");
        assert_eq!(b.due(), Some(1));
        b.unblocked(1);
        assert_eq!(b.due(), None, "at most once per command");
        feed(&b, &mut s, b"-UNBLOCKED x\r\n$-1\r\n");
        assert_eq!(b.due(), Some(3));
        feed(&b, &mut s, b"*-1\r\n");
        assert_eq!(b.due(), None);
    }

    #[test]
    fn queued_commands_and_pushes_do_not_count_as_blocking() {
        let b = Blocked::default();
        let mut s = ReplyStream::default();
        for c in ["MULTI", "BLPOP l 0", "EXEC", "BLPOP l 0"] {
            send(&b, c);
        }
        feed(
            &b,
            &mut s,
            b"+OK\r\n+QUEUED\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
        );
        assert_eq!(b.due(), None, "EXEC's reply is still due");
        feed(&b, &mut s, b"*1\r\n*-1\r\n");
        assert_eq!(b.due(), Some(3));
    }

    #[test]
    fn replies_that_cannot_be_counted_stop_unblocking() {
        for c in ["CLIENT REPLY SKIP", "SUBSCRIBE ch", "MONITOR"] {
            let b = Blocked::default();
            let mut s = ReplyStream::default();
            send(&b, c);
            send(&b, "BLPOP l 0");
            feed(&b, &mut s, b"+OK\r\n");
            assert_eq!(b.due(), None, "{c}");
        }
        let b = Blocked::default();
        let mut s = ReplyStream::default();
        send(&b, "BLPOP l 0");
        feed(&b, &mut s, b"?bad\r\n");
        assert_eq!(b.due(), None);
        let b = Blocked::default();
        for _ in 0..=MAX_BLOCKING {
            send(&b, "BLPOP l 0");
        }
        assert_eq!(b.due(), None, "beyond the bound");
    }

    #[test]
    fn a_replaced_frame_counts_one_reply() {
        let b = Blocked::default();
        let mut s = ReplyStream::default();
        b.other();
        send(&b, "WAIT 1 0");
        assert_eq!(b.due(), None);
        feed(&b, &mut s, b"-ERR unknown command\r\n");
        assert_eq!(b.due(), Some(1));
    }
}
