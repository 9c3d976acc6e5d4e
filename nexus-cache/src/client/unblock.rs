//! Ending a pinned session whose command is blocked (`BLPOP k 0`,
//! `XREAD BLOCK 0`, `WAIT`...).
//!
//! A pinned session ends with a farewell (`RESET`, `QUIT`) that Redis runs
//! only once the blocked command returns: without help, never. So every
//! pinned connection learns its Redis client id as it opens ([`CLIENT_ID`]
//! is written ahead of the client's first command, on a connection that is
//! fresh: RESP2, replies on, no transaction, already authenticated, so its
//! reply is the first line Redis sends, `:<id>`, and the reply side drops
//! it, [`take_id`]). When the session ends, [`unblock`] sends
//! `CLIENT UNBLOCK <id> ERROR` on a shared connection until the session is
//! over: the client gets Redis's `-UNBLOCKED ...` error for its blocked
//! command, then Redis runs the farewell and closes.
//!
//! Sent from another connection, `CLIENT UNBLOCK` can overtake a blocking
//! command still on its way to Redis (then it answers `:0` and the command
//! blocks after it), and a pipeline can hold several blocking commands:
//! hence the repetition, until the session ends, with a growing pause
//! while nothing is blocked. Nothing is sent for a session that ends
//! within the first pause, the usual case (no blocked command).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::BytesMut;

use super::Shared;
use crate::resp::encode;

/// Written on a new pinned connection before anything else; its reply is
/// dropped by [`take_id`].
pub(super) const CLIENT_ID: &[u8] = b"*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n";

/// Longest reply to [`CLIENT_ID`] waited for (an integer, or a one-line
/// error such as `-NOPERM ...` when an ACL forbids it); a longer first line
/// is not its reply and is passed on untouched.
const MAX_ID_REPLY: usize = 1024;

/// The first pause, before anything is sent, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// What the first bytes from a new pinned connection hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum IdReply {
    /// Not a whole line yet: read more.
    Partial,
    /// The reply to [`CLIENT_ID`], `len` bytes, and the id if Redis gave
    /// one (not when `CLIENT` is forbidden or renamed).
    Line { len: usize, id: Option<u64> },
    /// Not a one-line reply: pass everything on.
    Other,
}

/// Looks for the reply to [`CLIENT_ID`] at the start of `buf`.
pub(super) fn take_id(buf: &[u8]) -> IdReply {
    let head = &buf[..buf.len().min(MAX_ID_REPLY)];
    let Some(end) = head.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() < MAX_ID_REPLY {
            IdReply::Partial
        } else {
            IdReply::Other
        };
    };
    let line = &buf[..end];
    let id = match line.split_first() {
        Some((b':', digits)) => std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u64>().ok()),
        Some((b'-', _)) => None,
        _ => return IdReply::Other,
    };
    IdReply::Line { len: end + 2, id }
}

/// Unblocks the ending session's connection, Redis client `id` (0 while
/// unknown), until the caller stops polling it (the session is over).
/// Never returns; gives up (waits forever) when Redis refuses the command.
pub(super) async fn unblock(id: &AtomicU64, shared: &Shared) {
    let mut pause = FIRST_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
        let id = id.load(Relaxed);
        if id == 0 {
            continue;
        }
        let mut req = BytesMut::with_capacity(64);
        let mut digits = itoa::Buffer::new();
        encode::command(
            &mut req,
            &[
                b"CLIENT",
                b"UNBLOCK",
                digits.format(id).as_bytes(),
                b"ERROR",
            ],
        );
        let reply = shared.pool.call(req.freeze(), 1).await;
        match &reply.bytes[..] {
            // One command unblocked; another may follow it in the pipeline.
            b":1\r\n" => {
                tracing::debug!(id, "blocked command of an ending pinned session unblocked");
                pause = FIRST_PAUSE;
            }
            // Nothing blocked now (not yet, or no more), or no reply (the
            // pool's connection failed): try again later.
            b":0\r\n" | b"" => {}
            other => {
                tracing::debug!(
                    reply = %String::from_utf8_lossy(other),
                    "CLIENT UNBLOCK refused; the ending pinned session waits for Redis"
                );
                return std::future::pending().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_reply_is_found_whole_or_waited_for() {
        assert_eq!(take_id(b""), IdReply::Partial);
        assert_eq!(take_id(b":12"), IdReply::Partial);
        assert_eq!(take_id(b":12\r"), IdReply::Partial);
        assert_eq!(
            take_id(b":12\r\n+OK\r\n"),
            IdReply::Line {
                len: 5,
                id: Some(12)
            }
        );
        assert_eq!(
            take_id(b"-NOPERM no\r\n$1\r\n"),
            IdReply::Line { len: 12, id: None }
        );
        assert_eq!(take_id(b":x\r\n"), IdReply::Line { len: 4, id: None });
    }

    #[test]
    fn anything_else_is_not_swallowed() {
        assert_eq!(take_id(b"+OK\r\n"), IdReply::Other);
        assert_eq!(take_id(b"$1\r\nx\r\n"), IdReply::Other);
        assert_eq!(take_id(&[b'-'; MAX_ID_REPLY]), IdReply::Other);
    }
}
