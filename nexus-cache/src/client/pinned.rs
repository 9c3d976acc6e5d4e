//! Pinned sessions: a client whose commands carry connection state (transactions,
//! blocking pops, pub/sub, RESP3, a non-default database, client tracking...) gets
//! its own upstream connection for the rest of its connection.
//!
//! Redis then owns the semantics entirely: the client's frames are forwarded in
//! order (still framed, so refused commands can be replaced) and everything Redis
//! sends, including out-of-band pushes and subscription messages, streams back
//! unchanged. Pinning is not undone when the state ends (e.g. after `EXEC`): the
//! state is hard to observe reliably (`CLIENT REPLY`, RESP3, subscriptions), and a
//! client that used it once usually uses it again.
//!
//! `NEXUS.*` admin commands are still the proxy's: their reply is computed
//! here and delivered by Redis in order ([`echo`](super::echo)).
//!
//! Input the proxy cannot frame or parse is never forwarded, even where
//! Redis would accept it (an inline command with escapes inside quotes,
//! more arguments than `max_elements`): its writes could take no near-cache
//! mark and cancel no lease. A command longer than `max_command_len` is
//! refused the same way, once the input buffered for it reaches the limit. The frames before it are forwarded; once Redis
//! has answered them and closed, the client gets `-ERR Protocol error: ...`
//! and the session ends, as on an unpinned connection.
//!
//! Both that and shutdown end the session the same way ([`farewell`]): the
//! proxy sends `RESET` and `QUIT` and keeps its write half open until Redis
//! closes, rather than shutting it: Redis frees a client on reading EOF and
//! drops the replies it has not written yet (a 16 MiB reply in flight was
//! cut to 4 to 8 MiB). Replies before the farewell's reach the client as
//! they arrive; only a tail that may begin `+RESET\r\n+OK\r\n` is held
//! back. A blocking command the client sent that is still blocked
//! (`BLPOP k 0`) gets `-UNBLOCKED` (`CLIENT UNBLOCK <id> ERROR` from a
//! shared connection), at once for refused input, near the end of the
//! grace on shutdown ([`unblock`](super::unblock)). Meanwhile the client's input
//! is discarded: if it leaves, the upstream write half is shut (Redis frees
//! even a connection blocked in `BLPOP k 0`). A session still not over is
//! dropped after `upstream_timeout` (and on shutdown when `shutdown_grace`
//! elapses). A client that has not left by the time its last reply is
//! written gets a lingering close ([`linger`](super::linger)): its input
//! is still discarded for a bounded time, after the session has given
//! back its pinned permit, so that closing the socket does not reset it
//! and cut the replies it has not read yet.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::linger::{self, discard};
use super::local::{self, Outcome};
use super::trace::{self, Class, Sampler};
use super::unblock::track::Blocked;
use super::unblock::{CLIENT_ID, IdReply, shutdown_delay, take_id, unblock};
use super::{Shared, count_local, echo};
use crate::error::{CommandTooLong, UpstreamError};
use crate::near::pinned::PinnedWrites;
use crate::replies::ReplyStream;
use crate::resp::{Command, Limits, Scanner, encode};
use crate::route::{Local, REFUSED};
use crate::upstream::connect;

struct PinnedGuard<'a>(&'a Shared);

impl Drop for PinnedGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.pinned_clients.fetch_sub(1, Relaxed);
    }
}

pub(super) async fn run(
    rd: OwnedReadHalf,
    mut wr: OwnedWriteHalf,
    pending: BytesMut,
    permit: OwnedSemaphorePermit,
    sampler: Sampler,
    shared: &Shared,
    shutdown: &CancellationToken,
) {
    shared.metrics.pinned_clients.fetch_add(1, Relaxed);
    let guard = PinnedGuard(shared);
    let config = &shared.config;
    let upstream = match connect(&config.upstream, config.connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            // The state the client asked for cannot be honoured: say so and close.
            shared
                .metrics
                .upstream_connect_failures
                .fetch_add(1, Relaxed);
            shared.metrics.proxy_errors.fetch_add(1, Relaxed);
            let _ = wr.write_all(&e.to_resp()).await;
            let _ = wr.shutdown().await;
            return;
        }
    };
    shared.metrics.upstream_connects.fetch_add(1, Relaxed);
    let (mut urd, mut uwr) = upstream.into_split();
    // Ahead of the client's first command: the connection's id, to unblock
    // it when the session ends (see `unblock`). A failed write shows as
    // the connection lost.
    let _ = uwr.write_all(CLIENT_ID).await;
    // Set by the reply side from the reply to `CLIENT_ID` (0: unknown).
    let id = AtomicU64::new(0);
    let closing = AtomicBool::new(false);
    // Set with `last` when the command before the farewell was
    // `CLIENT REPLY SKIP`: Redis then skips `RESET`'s reply.
    let skipped = AtomicBool::new(false);
    // The proxy's last reply, written after Redis's in place of the
    // farewell's (see `farewell`): empty on shutdown.
    let last = OnceLock::<Bytes>::new();
    // Near-cache marks of this session's writes, released by their replies.
    let near = PinnedWrites::new();
    // The blocking commands in flight, for `unblock`.
    let blocked = Blocked::default();
    // The reply side is inside a write to the client (or done): a reply of
    // the proxy's must not be appended if it is dropped then, and no
    // command is unblocked (the replies Redis sent meanwhile are not
    // counted yet). False only while it waits for Redis.
    let writing = AtomicBool::new(false);
    let down = async {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        // Until the reply to `CLIENT_ID` has been taken off the front.
        let mut id_pending = true;
        let mut id_scanner = Scanner::new(Limits::default()).inline(false);
        // That reply was an error and nothing followed yet: if Redis then
        // closes, it is the client's answer (`-ERR max number of clients
        // reached`).
        let mut id_error: Option<Bytes> = None;
        // The replies after `CLIENT_ID`'s, counted for `near` and `blocked`.
        let mut replies = ReplyStream::default();
        loop {
            if buf.capacity() < 4096 {
                buf.reserve(16 * 1024);
            }
            // Bytes kept back from the last chunk (see below).
            let mut kept = buf.len();
            match urd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    if id_pending {
                        // Part of the id's reply: not the client's.
                        buf.clear();
                    }
                    break;
                }
                Ok(_) => {
                    if id_pending {
                        match take_id(&mut id_scanner, &buf) {
                            IdReply::Partial => continue,
                            IdReply::Reply {
                                len,
                                id: got,
                                error,
                            } => {
                                if error {
                                    id_error = Some(Bytes::copy_from_slice(&buf[..len]));
                                }
                                buf.advance(len);
                                id.store(got.unwrap_or(0), Relaxed);
                            }
                            // Where the client's replies start is unknown.
                            IdReply::Unframed => blocked.lose(),
                        }
                        id_pending = false;
                        // Nothing was the client's before.
                        kept = 0;
                    }
                    if buf.len() > kept {
                        id_error = None;
                    }
                    // Counted once, for both trackers; not at all once
                    // neither needs it (no near cache, and replies no
                    // longer match commands for unblocking).
                    if shared.live.is_some() || blocked.counting() {
                        let fed = replies.feed(&buf[kept..]);
                        blocked.replies(fed);
                        // These replies may acknowledge writes: like the
                        // shared path, invalidate flights before the client
                        // sees them.
                        if let Some(live) = &shared.live {
                            live.invalidate_all();
                            near.replies(live, fed);
                        }
                    }
                    // Ending (refused input, shutdown): Redis's last bytes
                    // answer the proxy's farewell, which the client must
                    // not see.
                    let hold = if last.get().is_some() {
                        held(&buf, skipped.load(Relaxed))
                    } else {
                        0
                    };
                    let n = buf.len() - hold;
                    writing.store(true, Relaxed);
                    if wr.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    writing.store(false, Relaxed);
                    buf.advance(n);
                }
            }
        }
        // From here on every write is the session's last: the timeout
        // path must not repeat it.
        writing.store(true, Relaxed);
        match last.get() {
            Some(reply)
                if buf[..] == *FAREWELL_REPLIES
                    || (skipped.load(Relaxed) && buf[..] == *QUIT_REPLY) =>
            {
                let _ = wr.write_all(reply).await;
            }
            _ => {
                let _ = wr.write_all(&buf).await;
                // Closed before its time: say so, unless the session was
                // ending with nothing more to say (QUIT, shutdown). Redis's
                // own error if that is all it sent.
                if !closing.load(Relaxed) || last.get().is_some_and(|r| !r.is_empty()) {
                    let why = id_error.unwrap_or_else(|| UpstreamError::ConnectionLost.to_resp());
                    let _ = wr.write_all(&why).await;
                }
            }
        }
        let _ = wr.shutdown().await;
    };
    let ends = Ends {
        closing: &closing,
        last: &last,
        skipped: &skipped,
    };
    let up = forward_commands(
        rd, uwr, pending, sampler, shared, shutdown, ends, &near, &blocked,
    );
    // Whether the session outlived `upstream_timeout` after its end began,
    // and the client's read half if the client has not left.
    let (timed_out, rest) = {
        tokio::pin!(down);
        tokio::select! {
            () = &mut down => (false, None),
            kept = up => {
                let Some((mut uwr, mut rd)) = kept else {
                    // The client closed: its write half was shut, Redis frees
                    // the connection once it reads that.
                    down.await;
                    return;
                };
                // After a farewell (refused input, shutdown), Redis closes once
                // it has answered everything: the write half stays open until
                // then, since shutting it would make Redis drop replies still
                // unsent. A command still blocked is unblocked from a shared
                // connection (`unblock`), so that Redis gets to the farewell:
                // for refused input at once, on shutdown near the end of the
                // time the session may take (so that the command may still
                // complete), and only while the reply side is idle.
                // Meanwhile the client's input is read and discarded, so
                // that its leaving is seen: then the upstream write half is
                // shut as on any client EOF (Redis frees a connection blocked
                // in `BLPOP k 0` on reading it). Bounded by `upstream_timeout`
                // (on shutdown, also by `shutdown_grace`): then the session is
                // dropped, closing both connections.
                let after = if last.get().is_some_and(|r| !r.is_empty()) {
                    Duration::ZERO
                } else {
                    // The server drops the session when the grace ends.
                    shutdown_delay(config.upstream_timeout.min(config.shutdown_grace))
                };
                let mut left = false;
                let drain = async {
                    tokio::select! {
                        () = &mut down => {}
                        () = unblock(&id, &blocked, &writing, after, shared) => {}
                        eof = discard(&mut rd) => {
                            left = true;
                            if eof {
                                let _ = uwr.shutdown().await;
                                down.await;
                            }
                        }
                    }
                };
                let timed_out = tokio::time::timeout(config.upstream_timeout, drain)
                    .await
                    .is_err();
                (timed_out, (!left).then_some(rd))
            }
        }
    };
    if timed_out {
        tracing::debug!("pinned session dropped: Redis did not close after the farewell");
        // Refused input: the client still learns why it is closed (in
        // place of the reply Redis never sent), unless the reply side was
        // cut in the middle of a reply (the error would be read as part
        // of it).
        if let Some(reply) = last.get().filter(|r| !r.is_empty())
            && !writing.load(Relaxed)
        {
            write_last(&mut wr, reply).await;
        }
    }
    if let Some(mut rd) = rest {
        // The upstream connection is gone: the session no longer counts as
        // pinned while the client's socket lingers.
        drop(guard);
        drop(permit);
        let _ = wr.shutdown().await;
        linger::linger(&mut rd, linger::linger_bound(config), shutdown).await;
    }
}

/// How long the proxy's last reply may take to finish once part of it is
/// written.
const LAST_WRITE: Duration = Duration::from_millis(100);

/// Writes `reply` whole or not at all, unless the client stops reading
/// in the middle of it: a socket that has no room for it right away gets
/// none of it; one that takes part of it gets the rest within
/// [`LAST_WRITE`].
async fn write_last(wr: &mut OwnedWriteHalf, reply: &[u8]) {
    match wr.try_write(reply) {
        Ok(n) if n < reply.len() => {
            let _ = tokio::time::timeout(LAST_WRITE, wr.write_all(&reply[n..])).await;
        }
        _ => {}
    }
}

/// How many bytes at the end of `buf` the reply side holds back after the
/// farewell: the longest tail that may begin the farewell's replies, so
/// that replies before them reach the client at once. With `skipped`, the
/// replies may be `QUIT_REPLY` alone.
fn held(buf: &[u8], skipped: bool) -> usize {
    let tail = |replies: &[u8]| {
        (1..=buf.len().min(replies.len()))
            .rev()
            .find(|&k| buf[buf.len() - k..] == replies[..k])
            .unwrap_or(0)
    };
    let all = tail(FAREWELL_REPLIES);
    if skipped {
        all.max(tail(QUIT_REPLY))
    } else {
        all
    }
}

/// What the proxy sends Redis to end a session (refused input, shutdown):
/// `RESET` leaves any transaction, subscription, `MONITOR` or
/// `CLIENT REPLY OFF` (so `QUIT` is answered), and Redis closes the
/// connection once `QUIT`'s reply, after every earlier one, is written.
const FAREWELL: &[u8] = b"*1\r\n$5\r\nRESET\r\n*1\r\n$4\r\nQUIT\r\n";

/// Redis's replies to [`FAREWELL`] (RESP2 after `RESET`), its last bytes.
const FAREWELL_REPLIES: &[u8] = b"+RESET\r\n+OK\r\n";

/// Redis's replies to [`FAREWELL`] after `CLIENT REPLY SKIP`, which makes
/// it skip `RESET`'s reply.
const QUIT_REPLY: &[u8] = b"+OK\r\n";

fn is_reply_skip(cmd: &Command<'_>) -> bool {
    cmd.is(b"CLIENT")
        && cmd.len() == 3
        && cmd.arg(1).is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY"))
        && cmd.arg(2).is_some_and(|a| a.eq_ignore_ascii_case(b"SKIP"))
}

fn is_nexus(cmd: &Command<'_>) -> bool {
    let name = cmd.name();
    name.len() > 6 && name[..6].eq_ignore_ascii_case(b"NEXUS.")
}

/// The proxy's reply to a `NEXUS.*` command on a pinned connection. Those
/// that call Redis (`NEXUS.TAG`, `NEXUS.INVALIDATE`) would run on a shared
/// connection, outside the client's transaction and possibly before its
/// earlier commands: they are refused here.
fn nexus_reply(cmd: &Command<'_>, shared: &Shared) -> Bytes {
    let mut authed = true;
    match local::handle(Local::Nexus, cmd, &mut authed, shared) {
        Outcome::Reply(b) => b,
        _ => {
            let name = crate::error::single_line(
                &String::from_utf8_lossy(cmd.name()).to_ascii_lowercase(),
            );
            Bytes::from(format!(
                "-ERR nexus: '{name}' is not available on a pinned connection (use a connection without MULTI, WATCH, SELECT, HELLO 3, pub/sub or blocking commands)\r\n"
            ))
        }
    }
}

/// Input the proxy cannot frame or parse: not forwarded, even where Redis
/// would take it, since its writes could not be marked (see the module
/// docs). The frames `before` it are, then [`FAREWELL`]: Redis answers
/// them all and closes, and the reply side writes the error in place of
/// the farewell's replies and closes the client.
async fn refuse(
    err: &(dyn std::fmt::Display + Sync),
    before: &[u8],
    skip: bool,
    uwr: &mut OwnedWriteHalf,
    shared: &Shared,
    ends: Ends<'_>,
) {
    shared.metrics.proxy_errors.fetch_add(1, Relaxed);
    tracing::debug!(error = %err, "client protocol error on a pinned connection");
    let reply = format!(
        "-ERR Protocol error: {}\r\n",
        crate::error::single_line(&err.to_string())
    );
    farewell(before, Bytes::from(reply), skip, uwr, ends).await;
}

/// Ends the session without cutting Redis short: forwards the frames
/// `before` it, then [`FAREWELL`]. Redis answers them all and closes; the
/// reply side writes `last` in place of the farewell's replies and closes
/// the client. The caller keeps `uwr` open until Redis has closed.
async fn farewell(
    before: &[u8],
    last: Bytes,
    skip: bool,
    uwr: &mut OwnedWriteHalf,
    ends: Ends<'_>,
) {
    // `skipped` is stored before `last` is set, which publishes it.
    ends.skipped.store(skip, Relaxed);
    // Set before the farewell is sent: the reply side holds back its
    // replies from then on.
    let _ = ends.last.set(last);
    ends.closing.store(true, Relaxed);
    if uwr.write_all(before).await.is_ok() {
        let _ = uwr.write_all(FAREWELL).await;
    }
}

/// How the session ends, as the reply side must know it.
#[derive(Clone, Copy)]
struct Ends<'a> {
    /// The session is ending on purpose: no "connection lost" error.
    closing: &'a AtomicBool,
    /// The proxy's reply after Redis's last one (set at most once; empty
    /// on shutdown).
    last: &'a OnceLock<Bytes>,
    /// Redis skips `RESET`'s reply (see [`QUIT_REPLY`]).
    skipped: &'a AtomicBool,
}

/// Client -> Redis. Returns when the client closes, sends input the proxy
/// cannot frame or parse ([`refuse`]), or shutdown begins ([`farewell`]);
/// in those last two cases with the upstream write half, to be kept open
/// until Redis closes, and the client's read half, to see it leave.
// The session's halves and the state its two directions share.
#[allow(clippy::too_many_arguments)]
async fn forward_commands(
    mut rd: OwnedReadHalf,
    mut uwr: OwnedWriteHalf,
    mut buf: BytesMut,
    mut sampler: Sampler,
    shared: &Shared,
    shutdown: &CancellationToken,
    ends: Ends<'_>,
    near: &PinnedWrites,
    blocked: &Blocked,
) -> Option<(OwnedWriteHalf, OwnedReadHalf)> {
    let closing = ends.closing;
    let mut scanner = Scanner::new(shared.limits);
    let max_command_len = shared.config.max_command_len;
    // `buf` starts with the command that pinned the client, already counted
    // (and sampled) by the reader.
    let mut counted = true;
    // The last command forwarded was `CLIENT REPLY SKIP`: Redis will skip
    // the next reply, the farewell's `RESET`'s if it comes next.
    let mut skip = false;
    loop {
        let mut off = 0;
        loop {
            match scanner.scan(&buf[off..]) {
                Ok(Some(n)) => {
                    let parsed = Command::parse(&buf[off..off + n]);
                    if let Err(e) = &parsed
                        && !super::is_empty_command(&buf[off..off + n])
                    {
                        refuse(e, &buf[..off], skip, &mut uwr, shared, ends).await;
                        return Some((uwr, rd));
                    }
                    // (Blank inline lines, the other `Err`s here, run nothing.)
                    if let Ok(cmd) = &parsed {
                        skip = is_reply_skip(cmd);
                    }
                    if !std::mem::take(&mut counted) {
                        shared.metrics.commands.fetch_add(1, Relaxed);
                        shared.metrics.pinned_commands.fetch_add(1, Relaxed);
                        if sampler.tick()
                            && let Ok(cmd) = &parsed
                        {
                            trace::event(cmd, Class::Pinned);
                        }
                    }
                    if let Some(live) = &shared.live {
                        match &parsed {
                            Ok(cmd)
                                if !cmd.is(b"QUIT")
                                    && !is_nexus(cmd)
                                    && !REFUSED.iter().any(|r| cmd.is(r)) =>
                            {
                                let leases = near.command(live, cmd);
                                live.cancel_leases(leases).await;
                            }
                            Err(_) if super::is_empty_command(&buf[off..off + n]) => {}
                            _ => near.other(),
                        }
                    }
                    match &parsed {
                        Ok(cmd) if REFUSED.iter().any(|r| cmd.is(r)) || is_nexus(cmd) => {
                            blocked.other();
                        }
                        Ok(cmd) => blocked.command(cmd),
                        // Blank lines: no reply.
                        Err(_) => {}
                    }
                    let replacement = match parsed {
                        Ok(cmd) if cmd.is(b"QUIT") => {
                            closing.store(true, Relaxed);
                            None
                        }
                        Ok(cmd) if REFUSED.iter().any(|r| cmd.is(r)) => {
                            let mut name = b"NEXUS-REFUSED:".to_vec();
                            name.extend(cmd.name().iter().map(u8::to_ascii_uppercase));
                            let mut out = BytesMut::new();
                            encode::command(&mut out, &[&name]);
                            Some(out)
                        }
                        Ok(cmd) if is_nexus(&cmd) => {
                            let reply = nexus_reply(&cmd, shared);
                            count_local(&reply, shared);
                            Some(echo::command(&reply))
                        }
                        Ok(cmd) => {
                            // Writes here invalidate flights too (read-your-writes
                            // across pinned and shared connections).
                            if let Some(live) = &shared.live {
                                live.note_command(&cmd);
                            }
                            None
                        }
                        Err(_) => None,
                    };
                    if let Some(rep) = replacement {
                        if uwr.write_all(&buf[..off]).await.is_err()
                            || uwr.write_all(&rep).await.is_err()
                        {
                            return None;
                        }
                        buf.advance(off + n);
                        off = 0;
                    } else {
                        off += n;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    refuse(&e, &buf[..off], skip, &mut uwr, shared, ends).await;
                    return Some((uwr, rd));
                }
            }
        }
        if off > 0 {
            if uwr.write_all(&buf[..off]).await.is_err() {
                return None;
            }
            buf.advance(off);
        }
        // `buf` now holds only the start of an incomplete command: past
        // `max_command_len`, refused like input that cannot be framed.
        let Some(room) = super::read_room(buf.len(), max_command_len) else {
            let err = CommandTooLong {
                max: max_command_len,
            };
            refuse(&err, &[], skip, &mut uwr, shared, ends).await;
            return Some((uwr, rd));
        };
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let mut limited = (&mut buf).limit(room);
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                // Complete frames are all forwarded; a partial one never is.
                // After the client's QUIT, Redis closes by itself.
                if !closing.load(Relaxed) {
                    farewell(&[], Bytes::new(), skip, &mut uwr, ends).await;
                }
                return Some((uwr, rd));
            }
            r = rd.read_buf(&mut limited) => match r {
                Ok(0) | Err(_) => {
                    let _ = uwr.shutdown().await;
                    return None;
                }
                Ok(_) => {}
            },
        }
    }
}
