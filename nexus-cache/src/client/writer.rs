//! The reply side of a client connection: writes replies strictly in the order
//! the commands arrived, coalescing whatever is already available into one write.

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Release;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use super::gets;
use crate::error::UpstreamError;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::near::WriteMarks;
use crate::upstream::Reply;

/// Replies at least this large are written directly instead of copied.
const DIRECT_WRITE: usize = 16 * 1024;
/// Buffered reply bytes that force a flush.
const FLUSH_AT: usize = 64 * 1024;

/// One entry of the client's ordered reply queue.
#[derive(Debug)]
pub(crate) enum Slot {
    /// A reply the proxy already has (local answers, errors).
    Ready(Bytes),
    /// As `Ready`, for a sampled command: its span ends once the reply is
    /// written to the socket.
    Traced(Bytes, Box<tracing::Span>),
    /// The replies to `count` commands sent upstream as one batch.
    Upstream {
        rx: oneshot::Receiver<Reply>,
        count: usize,
        /// The batch holds a write: `unacked` is decremented once it is answered.
        writes: bool,
        /// The one reply answers a `GET` completed outside the upstream
        /// reader (a flight, a guarded read): counted here. Batches' `GET`s
        /// are counted by the upstream reader ([`gets`](super::gets)).
        get: bool,
        /// The near-cache side of its writes (empty unless `writes`).
        near: WriteMarks,
        /// The spans of its sampled commands (at most
        /// [`MAX_BATCH_SPANS`](super::trace::MAX_BATCH_SPANS)), closed once
        /// the replies are written to the socket.
        spans: Vec<tracing::Span>,
    },
    /// Flush, then close the connection (QUIT, protocol errors).
    Close,
    /// Flush, then give the socket back for a pinned session.
    Handover,
}

/// How the writer ended.
#[derive(Debug)]
pub(crate) enum WriteEnd {
    /// The connection is finished (closed, or the client is gone).
    Closed,
    /// All earlier replies are written; the write half is handed back.
    Handover(OwnedWriteHalf),
}

pub(crate) async fn write_replies(
    mut wr: OwnedWriteHalf,
    mut slots: mpsc::Receiver<Slot>,
    unacked: &AtomicUsize,
    live: Option<&Live>,
    metrics: &Metrics,
) -> WriteEnd {
    // Allocated on the first reply; idle clients hold no write buffer.
    let mut out = BytesMut::new();
    loop {
        let slot = match slots.try_recv() {
            Ok(s) => s,
            Err(mpsc::error::TryRecvError::Empty) => {
                if flush(&mut wr, &mut out).await.is_err() {
                    return WriteEnd::Closed;
                }
                match slots.recv().await {
                    Some(s) => s,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let result = match slot {
            Slot::Ready(b) => append(&mut wr, &mut out, &b).await,
            Slot::Traced(b, span) => {
                let written = match append(&mut wr, &mut out, &b).await {
                    Ok(()) => flush(&mut wr, &mut out).await,
                    Err(e) => Err(e),
                };
                drop(span);
                written
            }
            Slot::Upstream {
                mut rx,
                count,
                writes,
                get,
                near,
                spans,
            } => {
                let reply = match rx.try_recv() {
                    Ok(r) => Ok(r),
                    Err(oneshot::error::TryRecvError::Empty) => {
                        match flush(&mut wr, &mut out).await {
                            Ok(()) => Ok(rx.await.unwrap_or_else(|_| lost(count))),
                            Err(e) => Err(e),
                        }
                    }
                    Err(oneshot::error::TryRecvError::Closed) => Ok(lost(count)),
                };
                if writes {
                    unacked.fetch_sub(1, Release);
                    // Before the client (and anyone it tells) sees the write
                    // acknowledged: no later read joins a flight that may
                    // have reached Redis before the write did.
                    if let Some(live) = live {
                        live.invalidate_all();
                        live.near_acknowledge(near);
                    }
                }
                let written = match reply {
                    Ok(r) => {
                        if get {
                            gets::count_one(&r.bytes, metrics);
                        }
                        match write_reply(&mut wr, &mut out, r).await {
                            // A sampled batch is flushed now so that its
                            // spans end after the reply left (one more write
                            // per sampled batch, none otherwise).
                            Ok(()) if !spans.is_empty() => flush(&mut wr, &mut out).await,
                            r => r,
                        }
                    }
                    Err(e) => Err(e),
                };
                drop(spans);
                written
            }
            Slot::Close => {
                let _ = flush(&mut wr, &mut out).await;
                let _ = wr.shutdown().await;
                return WriteEnd::Closed;
            }
            Slot::Handover => {
                return match flush(&mut wr, &mut out).await {
                    Ok(()) => WriteEnd::Handover(wr),
                    Err(_) => WriteEnd::Closed,
                };
            }
        };
        if result.is_err() {
            return WriteEnd::Closed;
        }
    }
    let _ = flush(&mut wr, &mut out).await;
    let _ = wr.shutdown().await;
    WriteEnd::Closed
}

fn lost(count: usize) -> Reply {
    Reply {
        bytes: Bytes::new(),
        failure: Some((count, UpstreamError::ConnectionLost)),
    }
}

async fn write_reply(wr: &mut OwnedWriteHalf, out: &mut BytesMut, r: Reply) -> std::io::Result<()> {
    append(wr, out, &r.bytes).await?;
    if let Some((missing, err)) = r.failure {
        let line = err.to_resp();
        for _ in 0..missing {
            append(wr, out, &line).await?;
        }
    }
    Ok(())
}

async fn append(wr: &mut OwnedWriteHalf, out: &mut BytesMut, b: &[u8]) -> std::io::Result<()> {
    if b.len() >= DIRECT_WRITE {
        flush(wr, out).await?;
        return wr.write_all(b).await;
    }
    out.extend_from_slice(b);
    if out.len() >= FLUSH_AT {
        flush(wr, out).await?;
    }
    Ok(())
}

async fn flush(wr: &mut OwnedWriteHalf, out: &mut BytesMut) -> std::io::Result<()> {
    if !out.is_empty() {
        wr.write_all(out).await?;
        out.clear();
    }
    Ok(())
}
