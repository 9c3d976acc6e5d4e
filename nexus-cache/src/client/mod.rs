//! One client connection.
//!
//! Two halves run concurrently in the connection's task: the reader frames
//! commands with the scan-only [`Scanner`], groups consecutive forwardable
//! commands into one [`Batch`] (their raw bytes, split off the read buffer
//! without copying) and pushes one reply [`Slot`] per batch or local answer onto
//! a bounded, ordered queue; the writer drains that queue in order. Replies
//! therefore leave in exactly the order commands arrived, however deep the
//! pipeline. When a command needs connection state, the connection hands over to
//! a pinned session ([`pinned`]) once every earlier reply is written.
//!
//! Both read client input into a buffer that never holds more than
//! `max_command_len` bytes ([`read_room`]): a command that reaches it
//! without completing is refused like malformed input.
//!
//! A refused client gets the replies due before the refusal, then the
//! error, then a lingering close ([`linger`]): its further input is read
//! and discarded, so that closing the socket does not reset it and cut
//! those replies.

mod echo;
pub(crate) mod gets;
mod linger;
mod local;
mod pinned;
mod trace;
mod unblock;
mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::{Credentials, ProxyConfig};
use crate::error::CommandTooLong;
use crate::live::{Live, Plan};
use crate::metrics::Metrics;
use crate::near::WriteMarks;
use crate::resp::{Command, Limits, Scanner};
use crate::route::{self, Route};
use crate::upstream::{Batch, Lane, Pool, Reply};
pub(crate) use gets::Gets;
use local::Outcome;
use trace::{Class, MAX_BATCH_SPANS, Sampler};
use writer::{Slot, WriteEnd};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Initial read buffer: small, so idle clients cost little (grows on demand).
const FIRST_READ: usize = 4 * 1024;
/// Bytes of forwardable commands that close a batch early.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Bytes of consecutive near-cache hits answered as one reply slot.
const MAX_HIT_BYTES: usize = 64 * 1024;

/// State shared by every client of one proxy.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Arc<ProxyConfig>,
    pub(crate) pool: Pool,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) pinned: Arc<Semaphore>,
    pub(crate) limits: Limits,
    pub(crate) client_auth: Option<Credentials>,
    /// The live cache mechanisms; `None` without a policy.
    pub(crate) live: Option<Arc<Live>>,
}

/// How the reader ended.
enum ReadEnd {
    Closed,
    /// Refused input (a protocol error): the replies due, the error and
    /// [`Slot::Close`] are queued; the client's read half, for the
    /// lingering close ([`linger`]).
    Refused(OwnedReadHalf),
    Pin {
        rd: OwnedReadHalf,
        pending: BytesMut,
        permit: OwnedSemaphorePermit,
        sampler: Sampler,
    },
}

/// Decrements the connected-clients gauge however the session ends.
struct ClientGuard<'a>(&'a Metrics);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.connected_clients.fetch_sub(1, Relaxed);
    }
}

/// Serves one client until it leaves, breaks the protocol, or shutdown.
pub(crate) async fn serve(stream: TcpStream, shared: Arc<Shared>, shutdown: CancellationToken) {
    shared.metrics.connected_clients.fetch_add(1, Relaxed);
    let number = shared.metrics.total_connections.fetch_add(1, Relaxed);
    let sampler = Sampler::new(shared.config.trace_sample, number);
    let _guard = ClientGuard(&shared.metrics);
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let (slot_tx, slot_rx) = mpsc::channel(shared.config.pipeline_depth.get());
    let lane = shared.pool.assign();
    // Batches holding writes whose replies have not arrived yet: while there
    // are any, this client's reads stay in its own ordered batches instead of
    // joining flights that could reach Redis before its writes.
    let unacked = AtomicUsize::new(0);
    // Dropped when the writer is done.
    let (written_tx, written_rx) = oneshot::channel::<()>();
    let reader = async {
        match read_commands(rd, slot_tx, &lane, &shared, &shutdown, &unacked, sampler).await {
            ReadEnd::Refused(mut rd) => {
                // The client's input is discarded while the writer writes
                // the replies due and the error (a client blocked sending
                // the rest of its command gets to read them), then for
                // the lingering close once it has shut its half.
                tokio::select! {
                    _ = written_rx => {
                        let bound = linger::linger_bound(&shared.config);
                        linger::linger(&mut rd, bound, &shutdown).await;
                    }
                    _ = linger::discard(&mut rd) => {}
                    () = shutdown.cancelled() => {}
                }
                ReadEnd::Closed
            }
            end => end,
        }
    };
    let writer = async {
        let end = writer::write_replies(
            wr,
            slot_rx,
            &unacked,
            shared.live.as_deref(),
            &shared.metrics,
        )
        .await;
        drop(written_tx);
        end
    };
    let (r, w) = tokio::join!(reader, writer);
    if let (
        ReadEnd::Pin {
            rd,
            pending,
            permit,
            sampler,
        },
        WriteEnd::Handover(wr),
    ) = (r, w)
    {
        pinned::run(rd, wr, pending, permit, sampler, &shared, &shutdown).await;
    }
}

/// A run of forwardable commands at the start of the read buffer, preceded
/// by the replies to a run of near-cache hits (sent first, as one slot).
struct PendingBatch {
    /// Replies to consecutive near-cache hits, in order; they precede every
    /// command of the batch.
    hits: BytesMut,
    /// Bytes of the read buffer the batch consumed.
    bytes: usize,
    count: usize,
    /// Whether it holds a write (see `unacked`).
    writes: bool,
    /// Set once a command was rewritten: the batch's bytes to send, copied,
    /// since they no longer match the read buffer.
    owned: Option<BytesMut>,
    /// The near-cache side of its writes, acknowledged with its replies.
    near: WriteMarks,
    /// Which of its commands are `GET`s (hit/miss counting).
    gets: Gets,
    /// The spans of its sampled commands (at most [`MAX_BATCH_SPANS`]).
    spans: Vec<tracing::Span>,
    /// Commands read (`commands`) and routed to the pool (`routed_to_pool`)
    /// since the counters were last published: added to the shared metrics
    /// once per batch rather than once per command (see [`Self::publish`]).
    read: u64,
    routed: u64,
}

impl PendingBatch {
    fn new() -> Self {
        Self {
            hits: BytesMut::new(),
            bytes: 0,
            count: 0,
            writes: false,
            owned: None,
            near: WriteMarks::new(),
            gets: Gets::new(),
            spans: Vec::new(),
            read: 0,
            routed: 0,
        }
    }

    /// Adds the commands counted since the last call to the shared
    /// counters. Called before a batch is sent and before any command is
    /// answered otherwise, so the metrics count a command before its
    /// reply can reach anyone.
    fn publish(&mut self, metrics: &Metrics) {
        if self.read > 0 {
            metrics
                .commands
                .fetch_add(std::mem::take(&mut self.read), Relaxed);
        }
        if self.routed > 0 {
            metrics
                .routed_to_pool
                .fetch_add(std::mem::take(&mut self.routed), Relaxed);
        }
    }
}

async fn read_commands(
    mut rd: OwnedReadHalf,
    slots: mpsc::Sender<Slot>,
    lane: &Lane,
    shared: &Shared,
    shutdown: &CancellationToken,
    unacked: &AtomicUsize,
    mut sampler: Sampler,
) -> ReadEnd {
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let mut scanner = Scanner::new(shared.limits);
    let mut authed = shared.client_auth.is_none();
    let max_batch = shared.config.max_batch.get();
    let max_command_len = shared.config.max_command_len;
    let client = shared.live.as_deref().map_or(0, Live::client_id);
    // One future for the connection's life: registered with the token once,
    // not on every read.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    loop {
        let mut batch = PendingBatch::new();
        'commands: loop {
            // A batch carries at most MAX_BATCH_SPANS spans: a further
            // sampled command starts a new one (only with dense sampling).
            if batch.spans.len() >= MAX_BATCH_SPANS
                && sampler.next_is_sampled()
                && !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics).await
            {
                return ReadEnd::Closed;
            }
            // A complete command array is framed and parsed in one pass;
            // anything else (inline, invalid input, a frame not complete
            // yet) takes the scanner, then `Command::parse`. A frame the
            // scanner has started on stays with it: it resumes where it
            // stopped, where another one-pass attempt would walk the frame
            // from its start again on every read (quadratic in a large
            // frame's arguments).
            let prefix = if scanner.is_partial() {
                None
            } else {
                Command::parse_prefix(&buf[batch.bytes..], &shared.limits)
            };
            let (n, parsed) = match prefix {
                Some((cmd, n)) => (n, Ok(cmd)),
                None => {
                    let n = match scanner.scan(&buf[batch.bytes..]) {
                        Ok(Some(n)) => n,
                        Ok(None) => break,
                        Err(e) => {
                            return protocol_error(
                                rd, &mut buf, batch, &e, &slots, lane, shared, unacked,
                            )
                            .await;
                        }
                    };
                    (n, Command::parse(&buf[batch.bytes..batch.bytes + n]))
                }
            };
            let frame = &buf[batch.bytes..batch.bytes + n];
            let cmd = match parsed {
                Ok(c) => c,
                // An empty line, `*0` or `*-1`: Redis skips these without a reply.
                Err(_) if is_empty_command(frame) => {
                    if !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics).await {
                        return ReadEnd::Closed;
                    }
                    buf.advance(n);
                    continue;
                }
                Err(e) => {
                    return protocol_error(rd, &mut buf, batch, &e, &slots, lane, shared, unacked)
                        .await;
                }
            };
            batch.read += 1;
            let mut route = route::classify(&cmd, shared.config.upstream.db);
            if !authed
                && !matches!(
                    route,
                    Route::Local(route::Local::Auth | route::Local::Hello | route::Local::Quit)
                )
            {
                route = Route::Refuse;
            }
            let sampled = sampler.tick();
            // A sampled command's span, ended once its reply is written.
            let mut span = None;
            if sampled {
                match route {
                    Route::Forward => {
                        span = Some(Box::new(trace::span(&cmd, Class::of_forwarded(&cmd))));
                    }
                    // Its reply comes from the pinned session (see `trace`).
                    Route::Pin => trace::event(&cmd, Class::Pinned),
                    Route::Local(_) | Route::Refuse => {
                        span = Some(Box::new(trace::span(&cmd, Class::Local)));
                    }
                }
            }
            // Each class has its own counter (never derived by subtraction).
            // A `Pin` is counted once the permit is taken (or, refused, as local).
            match route {
                Route::Forward => batch.routed += 1,
                Route::Pin => batch.publish(&shared.metrics),
                Route::Local(_) | Route::Refuse => {
                    batch.publish(&shared.metrics);
                    shared.metrics.local_commands.fetch_add(1, Relaxed);
                }
            }
            // Only forwarded `GET`s are counted as hits or misses.
            let mut get = false;
            // Decide while `cmd` borrows the buffer; act after.
            let outcome = 'decide: {
                match route {
                    Route::Forward => {
                        get = cmd.len() == 2 && cmd.name().eq_ignore_ascii_case(b"GET");
                        let plan = match &shared.live {
                            None => Plan::Plain,
                            Some(live) => {
                                live.plan(&cmd, !batch.writes && unacked.load(Acquire) == 0, client)
                            }
                        };
                        if matches!(plan, Plan::Write | Plan::AppendPx(_))
                            && let Some(live) = &shared.live
                        {
                            live.near_write(&cmd, &mut batch.near);
                        }
                        match plan {
                            Plan::Plain | Plan::Write => {
                                batch.writes |= matches!(plan, Plan::Write);
                                if let Some(owned) = &mut batch.owned {
                                    owned.extend_from_slice(frame);
                                }
                            }
                            Plan::AppendPx(ms) => {
                                batch.writes = true;
                                let consumed = batch.bytes;
                                let owned = batch.owned.get_or_insert_with(|| {
                                    let mut o = BytesMut::with_capacity(consumed + READ_CHUNK);
                                    o.extend_from_slice(&buf[..consumed]);
                                    o
                                });
                                crate::live::append_px(owned, frame, &cmd, ms);
                            }
                            Plan::Flight { stripe, global } => {
                                break 'decide Outcome::Flight { stripe, global };
                            }
                            Plan::Script(call) => {
                                // Its near-cache side, acknowledged with its reply.
                                let mut marks = WriteMarks::new();
                                live_near_write(shared, &cmd, &mut marks);
                                break 'decide Outcome::Script(call, marks);
                            }
                            Plan::Guarded(g) => break 'decide Outcome::Guarded(g),
                            Plan::Ready(reply) => break 'decide Outcome::Hit(reply),
                            Plan::NearFill(fill) => break 'decide Outcome::NearFill(fill),
                        }
                        if get {
                            batch.gets.set(batch.count);
                        }
                        if let Some(s) = span.take() {
                            batch.spans.push(*s);
                        }
                        batch.bytes += n;
                        batch.count += 1;
                        let full = batch.count >= max_batch || batch.bytes >= MAX_BATCH_BYTES;
                        if full
                            && !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics)
                                .await
                        {
                            return ReadEnd::Closed;
                        }
                        continue 'commands;
                    }
                    Route::Refuse if !authed => Outcome::Reply(Bytes::from_static(local::NOAUTH)),
                    Route::Refuse => Outcome::Reply(local::refused(&cmd)),
                    Route::Pin => Outcome::Pin(Bytes::new()),
                    Route::Local(l) => local::handle(l, &cmd, &mut authed, shared),
                }
            };
            // Consecutive hits share one slot: only a batch before them is sent now.
            let hit = matches!(outcome, Outcome::Hit(_));
            if (!hit || batch.count > 0)
                && !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics).await
            {
                return ReadEnd::Closed;
            }
            // A pin keeps the original frame in the buffer unless it was rewritten.
            let keep_frame = matches!(&outcome, Outcome::Pin(b) if b.is_empty());
            let frame = if matches!(outcome, Outcome::Flight { .. } | Outcome::NearFill(_)) {
                buf.split_to(n).freeze()
            } else {
                if !keep_frame {
                    buf.advance(n);
                }
                Bytes::new()
            };
            match outcome {
                Outcome::Hit(b) => {
                    // A `GET` answered with a value, from the near cache
                    // (routed like any `GET`: counted in `routed_to_pool`).
                    shared.metrics.get_hits.fetch_add(1, Relaxed);
                    batch.hits.extend_from_slice(&b);
                    if batch.hits.len() >= MAX_HIT_BYTES
                        && !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics)
                            .await
                    {
                        return ReadEnd::Closed;
                    }
                }
                Outcome::Reply(b) => {
                    count_local(&b, shared);
                    if slots.send(ready(b, span)).await.is_err() {
                        return ReadEnd::Closed;
                    }
                }
                Outcome::Quit => {
                    shared.metrics.answered_locally.fetch_add(1, Relaxed);
                    let _ = slots
                        .send(ready(Bytes::from_static(b"+OK\r\n"), span))
                        .await;
                    let _ = slots.send(Slot::Close).await;
                    return ReadEnd::Closed;
                }
                Outcome::Forward(b) => {
                    let spans = span.map(|s| vec![*s]).unwrap_or_default();
                    let sent = send_batch(
                        b,
                        1,
                        false,
                        WriteMarks::new(),
                        Gets::default(),
                        spans,
                        &slots,
                        lane,
                    )
                    .await;
                    if !sent {
                        return ReadEnd::Closed;
                    }
                }
                Outcome::Flight { stripe, global } => {
                    let (Some(live), Ok(permit)) = (&shared.live, slots.reserve().await) else {
                        return ReadEnd::Closed;
                    };
                    let rx = live.flight(frame, stripe, global, lane);
                    permit.send(single(rx, get, span));
                }
                Outcome::NearFill(fill) => {
                    let (Some(live), Ok(permit)) = (&shared.live, slots.reserve().await) else {
                        return ReadEnd::Closed;
                    };
                    let rx = live.near_fill(frame, fill, lane);
                    permit.send(single(rx, get, span));
                }
                Outcome::Script(call, marks) => {
                    let Some(live) = &shared.live else {
                        return ReadEnd::Closed;
                    };
                    let reply = live.run(lane, call).await;
                    live.near_acknowledge(marks);
                    if slots.send(ready(reply, span)).await.is_err() {
                        return ReadEnd::Closed;
                    }
                }
                Outcome::Guarded(g) => {
                    let (Some(live), Ok(permit)) = (&shared.live, slots.reserve().await) else {
                        return ReadEnd::Closed;
                    };
                    let rx = live.guarded_get(g, client, lane).await;
                    permit.send(single(rx, get, span));
                }
                Outcome::Admin(call) => {
                    let Some(live) = &shared.live else {
                        return ReadEnd::Closed;
                    };
                    let reply = local::admin(call, live, lane).await;
                    count_local(&reply, shared);
                    if slots.send(ready(reply, span)).await.is_err() {
                        return ReadEnd::Closed;
                    }
                }
                Outcome::Pin(first) => match Arc::clone(&shared.pinned).try_acquire_owned() {
                    Ok(permit) => {
                        // The pinned session does not count the command that pinned it.
                        shared.metrics.pinned_commands.fetch_add(1, Relaxed);
                        let mut pending = BytesMut::with_capacity(first.len() + buf.len());
                        pending.extend_from_slice(&first);
                        pending.extend_from_slice(&buf);
                        let _ = slots.send(Slot::Handover).await;
                        return ReadEnd::Pin {
                            rd,
                            pending,
                            permit,
                            sampler,
                        };
                    }
                    Err(_) => {
                        if keep_frame {
                            buf.advance(n);
                        }
                        let msg = format!(
                            "-ERR nexus: too many clients hold a dedicated upstream connection (max_pinned = {})\r\n",
                            shared.config.max_pinned
                        );
                        // Answered by the proxy: a local command, not a pinned one.
                        shared.metrics.local_commands.fetch_add(1, Relaxed);
                        shared.metrics.proxy_errors.fetch_add(1, Relaxed);
                        if slots.send(Slot::Ready(Bytes::from(msg))).await.is_err() {
                            return ReadEnd::Closed;
                        }
                    }
                },
            }
        }
        if !flush(&mut buf, &mut batch, &slots, lane, unacked, &shared.metrics).await {
            return ReadEnd::Closed;
        }
        // `buf` now holds only the start of an incomplete command.
        let Some(room) = read_room(buf.len(), max_command_len) else {
            let err = CommandTooLong {
                max: max_command_len,
            };
            return protocol_error(rd, &mut buf, batch, &err, &slots, lane, shared, unacked).await;
        };
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        let mut limited = (&mut buf).limit(room);
        tokio::select! {
            biased;
            () = &mut cancelled => return ReadEnd::Closed,
            r = rd.read_buf(&mut limited) => match r {
                Ok(0) | Err(_) => return ReadEnd::Closed,
                Ok(_) => {}
            },
        }
    }
}

/// Drops `cmd`'s keys from the near cache before it is forwarded (see
/// [`Live::near_write`]).
fn live_near_write(shared: &Shared, cmd: &Command<'_>, marks: &mut WriteMarks) {
    if let Some(live) = &shared.live {
        live.near_write(cmd, marks);
    }
}

/// How many bytes the next read may add to a buffer holding `buffered`
/// bytes of an incomplete command, so that it never holds more than
/// `max_command_len` ([`ProxyConfig::max_command_len`]): `None` once it
/// holds that many, since the command is then longer.
///
/// Checked once per read, against the buffered length: every complete
/// command has been taken off the buffer before the next read, so what is
/// left is the unparsed backlog, and a command of at most
/// `max_command_len` bytes always completes within the limit.
fn read_room(buffered: usize, max_command_len: usize) -> Option<usize> {
    max_command_len
        .checked_sub(buffered)
        .filter(|&room| room > 0)
}

/// Frames Redis silently skips: `*0`, `*-1`, and inline lines of separators only.
fn is_empty_command(frame: &[u8]) -> bool {
    frame == b"*0\r\n"
        || frame == b"*-1\r\n"
        || frame
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c))
}

fn count_local(reply: &[u8], shared: &Shared) {
    if reply.first() == Some(&b'-') {
        shared.metrics.proxy_errors.fetch_add(1, Relaxed);
    } else {
        shared.metrics.answered_locally.fetch_add(1, Relaxed);
    }
}

/// Sends the pending batch (if any). Returns false when the client is gone.
async fn flush(
    buf: &mut BytesMut,
    batch: &mut PendingBatch,
    slots: &mpsc::Sender<Slot>,
    lane: &Lane,
    unacked: &AtomicUsize,
    metrics: &Metrics,
) -> bool {
    batch.publish(metrics);
    if !batch.hits.is_empty() {
        let hits = batch.hits.split().freeze();
        if slots.send(Slot::Ready(hits)).await.is_err() {
            return false;
        }
    }
    if batch.count == 0 {
        return true;
    }
    let bytes = match batch.owned.take() {
        Some(owned) => {
            buf.advance(batch.bytes);
            owned.freeze()
        }
        None => buf.split_to(batch.bytes).freeze(),
    };
    let count = std::mem::take(&mut batch.count);
    let writes = std::mem::take(&mut batch.writes);
    let near = std::mem::take(&mut batch.near);
    let gets = std::mem::take(&mut batch.gets);
    batch.bytes = 0;
    if writes {
        unacked.fetch_add(1, Release);
    }
    let spans = std::mem::take(&mut batch.spans);
    send_batch(bytes, count, writes, near, gets, spans, slots, lane).await
}

/// A local reply's slot: traced when its command was sampled.
fn ready(reply: Bytes, span: Option<Box<tracing::Span>>) -> Slot {
    match span {
        None => Slot::Ready(reply),
        Some(span) => Slot::Traced(reply, span),
    }
}

/// The reply slot of one read completed outside a batch (a flight, a
/// near-cache fill, a guarded read).
fn single(rx: oneshot::Receiver<Reply>, get: bool, span: Option<Box<tracing::Span>>) -> Slot {
    Slot::Upstream {
        rx,
        count: 1,
        writes: false,
        get,
        near: WriteMarks::new(),
        spans: span.map(|s| vec![*s]).unwrap_or_default(),
    }
}

// One argument per field of the reply slot it creates.
#[allow(clippy::too_many_arguments)]
async fn send_batch(
    bytes: Bytes,
    count: usize,
    writes: bool,
    near: WriteMarks,
    gets: Gets,
    spans: Vec<tracing::Span>,
    slots: &mpsc::Sender<Slot>,
    lane: &Lane,
) -> bool {
    let (tx, rx) = oneshot::channel();
    // Reserve the reply slot first: a client that stops reading stops here,
    // before its commands reach Redis.
    let Ok(permit) = slots.reserve().await else {
        return false;
    };
    permit.send(Slot::Upstream {
        rx,
        count,
        writes,
        get: false,
        near,
        spans,
    });
    lane.send(Batch {
        bytes,
        count,
        reply: tx,
        gets,
    })
    .await;
    true
}

/// Refuses input the proxy cannot take: the commands before it still get
/// their replies, then the error, then the connection closes (lingering:
/// [`ReadEnd::Refused`]).
// The reader's state, handed over whole.
#[allow(clippy::too_many_arguments)]
async fn protocol_error(
    rd: OwnedReadHalf,
    buf: &mut BytesMut,
    mut batch: PendingBatch,
    err: &(dyn std::fmt::Display + Sync),
    slots: &mpsc::Sender<Slot>,
    lane: &Lane,
    shared: &Shared,
    unacked: &AtomicUsize,
) -> ReadEnd {
    // Commands before the bad frame still get their replies, then the error, then close.
    if flush(buf, &mut batch, slots, lane, unacked, &shared.metrics).await {
        // The refused input (up to `max_command_len`) is not kept while
        // the error waits for room in the reply queue, nor while lingering.
        *buf = BytesMut::new();
        shared.metrics.proxy_errors.fetch_add(1, Relaxed);
        tracing::debug!(error = %err, "client protocol error");
        let msg = format!(
            "-ERR Protocol error: {}\r\n",
            crate::error::single_line(&err.to_string())
        );
        if slots.send(Slot::Ready(Bytes::from(msg))).await.is_ok()
            && slots.send(Slot::Close).await.is_ok()
        {
            return ReadEnd::Refused(rd);
        }
    }
    ReadEnd::Closed
}
