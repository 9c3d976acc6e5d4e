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

use crate::client::Gets;
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
    /// Which of its commands are client `GET`s, counted as hits or misses
    /// as their replies are framed (empty for the proxy's own commands).
    pub(crate) gets: Gets,
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

    /// Assigns a connection (round robin) to one client. All of a client's
    /// batches go through the same connection, so Redis executes its commands in
    /// the order it sent them (a read after a write sees the write).
    pub(crate) fn assign(&self) -> Lane {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        Lane {
            tx: self.conns[i].clone(),
        }
    }

    /// Sends `count` raw commands and waits for their replies: the entry point for
    /// proxy-originated traffic not tied to a client (later: leases, refreshes).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn call(&self, bytes: Bytes, count: usize) -> Reply {
        self.assign().call(bytes, count).await
    }
}

/// One client's path to its assigned pool connection.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    tx: mpsc::Sender<Batch>,
}

impl Lane {
    /// Sends `count` raw commands on this lane and waits for their replies.
    /// Ordered after every batch this lane's client sent before.
    pub(crate) async fn call(&self, bytes: Bytes, count: usize) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.send(Batch {
            bytes,
            count,
            reply: tx,
            gets: Gets::new(),
        })
        .await;
        rx.await.unwrap_or(Reply {
            bytes: Bytes::new(),
            failure: Some((count, UpstreamError::ConnectionLost)),
        })
    }

    /// Queues a batch. Waits while the connection's queue is full (backpressure
    /// on the sending client only).
    pub(crate) async fn send(&self, batch: Batch) {
        if let Err(mpsc::error::SendError(batch)) = self.tx.send(batch).await {
            // The supervisor is gone only at shutdown; answer rather than hang.
            let _ = batch.reply.send(Reply {
                bytes: Bytes::new(),
                failure: Some((batch.count, UpstreamError::ShuttingDown)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::resp::encode;

    #[tokio::test]
    async fn call_returns_the_replies_of_a_batch_contiguously() {
        let redis = nexus_testkit::RedisServer::start().await.unwrap();
        let config = Arc::new(
            ProxyConfig::builder()
                .upstream(redis.url())
                .pool_size(1)
                .build()
                .unwrap(),
        );
        let metrics = Arc::new(Metrics::new());
        let pool = Pool::spawn(&config, &metrics);
        let mut req = Vec::new();
        encode::command(&mut req, &[b"SET", b"k", b"v"]);
        encode::command(&mut req, &[b"GET", b"k"]);
        encode::command(&mut req, &[b"INCR", b"k"]);
        let reply = pool.call(Bytes::from(req), 3).await;
        assert!(reply.failure.is_none());
        assert_eq!(
            &reply.bytes[..],
            b"+OK\r\n$1\r\nv\r\n-ERR value is not an integer or out of range\r\n"
        );
        let s = metrics.snapshot();
        assert_eq!(
            (
                s.upstream_connects,
                s.upstream_batches,
                s.upstream_error_replies
            ),
            (1, 1, 1)
        );
    }

    #[tokio::test]
    async fn call_to_a_dead_redis_fails_every_command() {
        let redis = nexus_testkit::RedisServer::start().await.unwrap();
        let config = Arc::new(
            ProxyConfig::builder()
                .upstream(redis.url())
                .pool_size(1)
                .build()
                .unwrap(),
        );
        redis.stop();
        let pool = Pool::spawn(&config, &Arc::new(Metrics::new()));
        let mut req = Vec::new();
        encode::command(&mut req, &[b"PING"]);
        encode::command(&mut req, &[b"PING"]);
        let reply = pool.call(Bytes::from(req), 2).await;
        let (missing, err) = reply.failure.unwrap();
        assert_eq!(missing, 2);
        assert!(matches!(err, UpstreamError::Unavailable(_)), "{err:?}");
        assert!(reply.bytes.is_empty());
    }
}
