//! Ending a pinned session whose command is blocked (`BLPOP k 0`,
//! `XREAD BLOCK 0`, `WAIT`...).
//!
//! A pinned session ends with a farewell (`RESET`, `QUIT`) that Redis runs
//! only once the blocked command returns: without help, never. So every
//! pinned connection learns its Redis client id as it opens ([`CLIENT_ID`]
//! is written ahead of the client's first command, on a connection that is
//! fresh: RESP2, replies on, no transaction, already authenticated, so its
//! reply is the first one Redis sends and the reply side drops it,
//! [`take_id`]). When the session ends, [`unblock`] sends
//! `CLIENT UNBLOCK <id> ERROR` on a shared connection (the client gets
//! Redis's `-UNBLOCKED` error), but only while the oldest command Redis has
//! not answered is a blocking command the client sent, once per such
//! command ([`track`]), and only while the session's reply side is idle:
//! waiting for Redis with every byte Redis sent counted, not stuck writing
//! to a client that stopped reading (replies then go uncounted, so the
//! oldest command unanswered may already be answered).
//!
//! When ([`shutdown_delay`]): on shutdown, near the end of the time the
//! session may take (a job pushed meanwhile is still delivered); on
//! refused input, at once.
//!
//! Never `TIMEOUT`: on a command held by `CLIENT PAUSE` (which Redis counts
//! as blocked, `BLPOP` included), `CLIENT UNBLOCK <id> TIMEOUT` crashes
//! Redis 7.x ("Unknown btype in replyToBlockedClientTimedOut", fixed in
//! redis#14164, valkey#2117). With `ERROR` such a command gets
//! `-UNBLOCKED` and stays queued: if the pause ends while the connection
//! lives, it still runs and its reply follows the error (a known
//! limitation).
//!
//! Sent from another connection, `CLIENT UNBLOCK` can overtake a blocking
//! command still on its way to Redis (then it answers `:0` and the command
//! blocks after it): it is repeated for the same command with a growing
//! pause. Nothing is sent while no blocking command is due. Blocking
//! commands pipelined one after another are unblocked one at a time, one
//! every [`CHECK`] plus a round trip.

pub(super) mod track;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::BytesMut;

use self::track::Blocked;
use super::Shared;
use crate::resp::{Scanner, encode};

/// Written on a new pinned connection before anything else; its reply is
/// dropped by [`take_id`].
pub(super) const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

/// How often an ending session looks for a command to unblock (no
/// network traffic unless one is due).
const CHECK: Duration = Duration::from_millis(10);
/// The first pause before `CLIENT UNBLOCK` is repeated for the same
/// command (`:0`, or an error worth retrying), and the longest.
const FIRST_RETRY: Duration = Duration::from_millis(10);
const MAX_RETRY: Duration = Duration::from_millis(200);
/// On shutdown, how long before the session's time is up unblocking
/// starts (at most half of that time).
const MARGIN: Duration = Duration::from_millis(500);

/// The first reply a new pinned connection sends, the reply to
/// [`CLIENT_ID`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IdReply {
    /// Not a whole reply yet: read more.
    Partial,
    /// The reply, `len` bytes: always dropped. `id` if it was an integer;
    /// `error` if it was an error (`-NOPERM ...` when an ACL forbids
    /// `CLIENT`, or `-ERR max number of clients reached` before Redis
    /// closes).
    Reply {
        len: usize,
        id: Option<u64>,
        error: bool,
    },
    /// Not valid RESP: nothing can be dropped, pass everything on.
    Unframed,
}

/// Frames the first reply at the start of `buf` with `scanner` (kept
/// between calls while [`IdReply::Partial`], as [`Scanner::scan`] asks).
pub(super) fn take_id(scanner: &mut Scanner, buf: &[u8]) -> IdReply {
    match scanner.scan(buf) {
        Ok(None) => IdReply::Partial,
        Err(_) => IdReply::Unframed,
        Ok(Some(len)) => {
            let frame = &buf[..len];
            let id = match frame.split_first() {
                Some((b':', rest)) => rest
                    .strip_suffix(b"\r\n")
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| d.parse::<u64>().ok())
                    .filter(|&id| id != 0),
                _ => None,
            };
            let error = matches!(frame.first(), Some(b'-' | b'!'));
            IdReply::Reply { len, id, error }
        }
    }
}

/// On shutdown, when the session may take `limit` (`shutdown_grace`, or
/// `upstream_timeout` if shorter): how long after it starts to end the
/// unblocking starts. The blocked command keeps most of that time to
/// complete. (Refused input unblocks at once.)
pub(super) fn shutdown_delay(limit: Duration) -> Duration {
    limit.saturating_sub(MARGIN).max(limit / 2)
}

/// Whether Redis will never accept `CLIENT UNBLOCK` from the pool: the
/// command forbidden (ACL), renamed or disabled, or unknown to it.
fn refused(reply: &[u8]) -> bool {
    let starts = |p: &[u8]| reply.len() >= p.len() && reply[..p.len()].eq_ignore_ascii_case(p);
    starts(b"-NOPERM") || starts(b"-ERR unknown command") || starts(b"-ERR unknown subcommand")
}

/// Unblocks the ending session's connection, Redis client `id` (0 while
/// unknown), starting `after` this is first polled, until the caller stops
/// polling it (the session is over). `writing`: the session's reply side
/// is in a write to the client (or done); nothing is sent then, the check
/// is repeated later. Never returns; gives up (waits forever) when Redis
/// refuses the command.
pub(super) async fn unblock(
    id: &AtomicU64,
    blocked: &Blocked,
    writing: &AtomicBool,
    after: Duration,
    shared: &Shared,
) {
    tokio::time::sleep(after).await;
    // The command being unblocked, the pause before its next try, when.
    let mut retry: Option<(u64, Duration, tokio::time::Instant)> = None;
    loop {
        let now = tokio::time::Instant::now();
        let due = blocked.due().filter(|&index| match retry {
            Some((i, _, at)) if i == index => now >= at,
            _ => true,
        });
        let client = id.load(Relaxed);
        // Idle: waiting for Redis, every reply so far counted.
        let idle = !writing.load(Relaxed);
        if let (Some(index), true, true) = (due, client != 0, idle) {
            let mut req = BytesMut::with_capacity(64);
            let mut digits = itoa::Buffer::new();
            encode::command(
                &mut req,
                &[
                    b"CLIENT",
                    b"UNBLOCK",
                    digits.format(client).as_bytes(),
                    b"ERROR",
                ],
            );
            let reply = shared.pool.call(req.freeze(), 1).await;
            match &reply.bytes[..] {
                b":1\r\n" => {
                    tracing::debug!(
                        client,
                        "blocked command of an ending pinned session unblocked"
                    );
                    blocked.unblocked(index);
                    retry = None;
                }
                other if refused(other) => {
                    tracing::debug!(
                        reply = %String::from_utf8_lossy(other),
                        "CLIENT UNBLOCK refused; the ending pinned session waits for Redis"
                    );
                    return std::future::pending().await;
                }
                // `:0`: not blocked yet (or no more); no reply (the pool's
                // connection failed); another error (`-BUSY` while a script
                // runs, `-LOADING`...): try again later.
                other => {
                    if !other.starts_with(b":0") && !other.is_empty() {
                        tracing::debug!(
                            reply = %String::from_utf8_lossy(other),
                            "CLIENT UNBLOCK failed; retrying"
                        );
                    }
                    let pause = match retry {
                        Some((i, pause, _)) if i == index => (pause * 2).min(MAX_RETRY),
                        _ => FIRST_RETRY,
                    };
                    retry = Some((index, pause, tokio::time::Instant::now() + pause));
                }
            }
        }
        tokio::time::sleep(CHECK).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resp::Limits;

    fn take(buf: &[u8]) -> IdReply {
        take_id(&mut Scanner::new(Limits::default()).inline(false), buf)
    }

    #[test]
    fn the_id_reply_is_framed_whole_or_waited_for() {
        assert_eq!(take(b""), IdReply::Partial);
        assert_eq!(take(b":12"), IdReply::Partial);
        assert_eq!(take(b":12\r"), IdReply::Partial);
        let id = |len, id| IdReply::Reply {
            len,
            id,
            error: false,
        };
        assert_eq!(take(b":12\r\n+OK\r\n"), id(5, Some(12)));
        assert_eq!(take(b":x\r\n"), id(4, None));
        assert_eq!(take(b":-3\r\n"), id(5, None));
        // Resumed across chunks.
        let mut scanner = Scanner::new(Limits::default()).inline(false);
        assert_eq!(take_id(&mut scanner, b"$3\r\nab"), IdReply::Partial);
        assert_eq!(take_id(&mut scanner, b"$3\r\nabc\r\n:1\r\n"), id(9, None));
    }

    #[test]
    fn an_error_is_dropped_and_flagged() {
        assert_eq!(
            take(b"-NOPERM no\r\n$1\r\n"),
            IdReply::Reply {
                len: 12,
                id: None,
                error: true
            }
        );
        assert_eq!(
            take(b"-ERR max number of clients reached\r\n"),
            IdReply::Reply {
                len: 36,
                id: None,
                error: true
            }
        );
    }

    #[test]
    fn any_other_reply_is_dropped_whole_and_never_shifts_the_next() {
        // A bulk whose payload holds a line end: only the whole frame.
        assert_eq!(
            take(b"$4\r\n1\r\n2\r\n+OK\r\n"),
            IdReply::Reply {
                len: 10,
                id: None,
                error: false
            }
        );
        assert_eq!(
            take(b"*2\r\n:1\r\n:2\r\n:3\r\n"),
            IdReply::Reply {
                len: 12,
                id: None,
                error: false
            }
        );
        assert_eq!(take(b"hello\r\n"), IdReply::Unframed);
    }

    #[test]
    fn only_a_refusal_gives_up() {
        assert!(refused(b"-NOPERM User x has no permissions\r\n"));
        assert!(refused(b"-ERR unknown command 'CLIENT', with args\r\n"));
        assert!(refused(
            b"-ERR unknown subcommand 'UNBLOCK'. Try CLIENT HELP.\r\n"
        ));
        assert!(!refused(b"-BUSY Redis is busy running a script\r\n"));
        assert!(!refused(b"-LOADING Redis is loading\r\n"));
        assert!(!refused(b"-ERR upstream connection lost\r\n"));
        assert!(!refused(b":0\r\n"));
    }

    #[test]
    fn shutdown_unblocks_near_the_end_of_its_time() {
        let at = |ms| shutdown_delay(Duration::from_millis(ms));
        assert_eq!(at(5_000), Duration::from_millis(4_500));
        assert_eq!(at(600), Duration::from_millis(300));
        assert_eq!(at(0), Duration::ZERO);
    }
}
