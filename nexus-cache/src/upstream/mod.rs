//! The upstream side: a small pool of pipelined, multiplexed connections to Redis
//! shared by all clients, and dedicated connections for clients with state.
//!
//! Requests travel as [`Batch`]es: the raw bytes of one or more complete commands
//! and their count. A batch is written contiguously, so its replies arrive
//! contiguously and come back as one `Bytes` slice of the read buffer (no copy,
//! no per-command allocation or channel).

mod conn;
mod connect;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::config::ProxyConfig;
use crate::error::UpstreamError;
use crate::metrics::Metrics;

pub(crate) use connect::connect;

/// Commands sent to Redis together, with where their replies go.
#[derive(Debug)]
pub(crate) struct Batch {
    /// Complete RESP commands, back to back.
    pub(crate) bytes: Bytes,
    /// How many commands (so how many replies) `bytes` holds.
    pub(crate) count: usize,
    /// Receives the replies. Dropped unanswered means the connection was lost.
    pub(crate) reply: oneshot::Sender<Reply>,
}

/// The replies to a [`Batch`]: `bytes` holds the replies to its first commands;
/// when `failure` is set, the remaining `failure.0` commands failed with `failure.1`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) bytes: Bytes,
    pub(crate) failure: Option<(usize, UpstreamError)>,
}

/// The shared pool. Cloning the handle is cheap; the connection tasks stop when
/// the last handle is dropped (after finishing what they hold).
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    conns: Arc<[mpsc::Sender<Batch>]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    /// Creates the pool and spawns one supervisor task per connection. Connections
    /// are opened lazily, on the first batch.
    pub(crate) fn spawn(config: &Arc<ProxyConfig>, metrics: &Arc<Metrics>) -> Self {
        let conns: Vec<_> = (0..config.pool_size.get())
            .map(|_| {
                let (tx, rx) = mpsc::channel(config.upstream_queue.get());
                tokio::spawn(conn::supervise(rx, Arc::clone(config), Arc::clone(metrics)));
                tx
            })
            .collect();
        Self {
            conns: conns.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queues a batch on the next connection (round robin). Waits while that
    /// connection's queue is full (backpressure on the sending client only).
    pub(crate) async fn send(&self, batch: Batch) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        if let Err(mpsc::error::SendError(batch)) = self.conns[i].send(batch).await {
            // The supervisor is gone only at shutdown; answer rather than hang.
            let _ = batch.reply.send(Reply {
                bytes: Bytes::new(),
                failure: Some((batch.count, UpstreamError::ShuttingDown)),
            });
        }
    }

    /// Sends `count` raw commands and waits for their replies: the entry point for
    /// proxy-originated traffic (later: tag scripts, leases, refreshes).
    #[allow(dead_code)]
    pub(crate) async fn call(&self, bytes: Bytes, count: usize) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.send(Batch {
            bytes,
            count,
            reply: tx,
        })
        .await;
        rx.await.unwrap_or(Reply {
            bytes: Bytes::new(),
            failure: Some((count, UpstreamError::ConnectionLost)),
        })
    }
}
