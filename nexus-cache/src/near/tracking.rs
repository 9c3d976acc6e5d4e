//! The invalidation link: one dedicated Redis connection in RESP3 with
//! `CLIENT TRACKING ON BCAST PREFIX ...` for the near-cache rules' key
//! prefixes. Redis pushes `invalidate [keys]` for every write to a key under
//! those prefixes (from any client, the proxy's pool included) and
//! `invalidate null` on `FLUSHALL`/`FLUSHDB`.
//!
//! The task owns the link's whole life: it waits for a policy with
//! near-cache rules, connects (authenticated, on the URL's database),
//! subscribes, and only then lets the cache serve ([`Inner::enable`]).
//! It pings every [`PING_EVERY`]; a link that closes, errs or leaves a ping
//! unanswered for [`PING_TIMEOUT`] is dropped: the cache is flushed and off
//! ([`Inner::disable`]) until a new link is subscribed, after a backoff
//! (the proxy's `backoff_initial` doubling to `backoff_max`). A policy
//! change that keeps the prefixes swaps the partitions in place; one that
//! changes them resubscribes on a new link.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use bytes::BytesMut;
use nexus_resp::{Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Inner, applies_to_get};
use crate::config::{ProxyConfig, UpstreamAddr};
use crate::policy::Policy;
use crate::resp::{Limits, encode};
use crate::upstream::connect;

/// How often the task looks for policy changes.
const POLICY_POLL: Duration = Duration::from_millis(100);
/// How often the link is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);
/// An unanswered ping older than this ends the link.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// The connection name Redis shows in `CLIENT LIST`.
pub(crate) const LINK_NAME: &[u8] = b"nexus-near-tracking";
/// A link that lived this long resets the backoff.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// Largest push frame accepted (a Redis invalidation batch of many keys).
const MAX_FRAME: usize = 64 << 20;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    addr: UpstreamAddr,
    connect_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl From<&ProxyConfig> for LinkConfig {
    fn from(c: &ProxyConfig) -> Self {
        Self {
            addr: c.upstream.clone(),
            connect_timeout: c.connect_timeout,
            backoff_initial: c.backoff_initial,
            backoff_max: c.backoff_max,
        }
    }
}

/// The link task; stops when dropped.
pub(crate) struct Link(JoinHandle<()>);

impl Drop for Link {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(super) fn spawn(inner: Arc<Inner>, config: LinkConfig) -> Link {
    Link(tokio::spawn(run(inner, config)))
}

/// Why a session ended.
enum End {
    /// The policy's prefixes changed: resubscribe at once.
    Resubscribe,
    /// The link failed.
    Lost(String),
}

async fn run(inner: Arc<Inner>, config: LinkConfig) {
    let mut backoff = config.backoff_initial;
    loop {
        let policy = wait_for_near_rules(&inner).await;
        // Before any partition can exist: see `Inner::used`.
        inner.used.store(true, SeqCst);
        let prefixes = prefixes(&policy);
        let started = Instant::now();
        let end = session(&inner, &config, policy, &prefixes).await;
        inner.disable();
        match end {
            End::Resubscribe => backoff = config.backoff_initial,
            End::Lost(why) => {
                tracing::warn!(reason = %why, "near cache: tracking link lost; near cache flushed and off until it is back");
                if started.elapsed() >= HEALTHY_AFTER {
                    backoff = config.backoff_initial;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.backoff_max);
            }
        }
    }
}

async fn wait_for_near_rules(inner: &Inner) -> Arc<Policy> {
    loop {
        let policy = inner.policy.load_full();
        if policy
            .rules()
            .iter()
            .any(|r| r.near_cache.is_some() && applies_to_get(r))
        {
            return policy;
        }
        tokio::time::sleep(POLICY_POLL).await;
    }
}

/// The prefixes to subscribe to: the literal start of each near-cache rule's
/// key glob, without overlaps (Redis rejects prefixes of one another). An
/// empty result means every key.
pub(crate) fn prefixes(policy: &Policy) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = policy
        .rules()
        .iter()
        .filter(|r| r.near_cache.is_some() && applies_to_get(r))
        .map(|r| r.keys.literal_prefix())
        .collect();
    all.sort();
    let mut out: Vec<Vec<u8>> = Vec::with_capacity(all.len());
    for p in all {
        if p.is_empty() {
            return Vec::new();
        }
        // Sorted: a prefix of `p` sorts right before it (or equal).
        if out.last().is_some_and(|q| p.starts_with(q)) {
            continue;
        }
        out.push(p);
    }
    out
}

async fn session(
    inner: &Inner,
    config: &LinkConfig,
    policy: Arc<Policy>,
    subscribed: &[Vec<u8>],
) -> End {
    let mut stream = match connect(&config.addr, config.connect_timeout).await {
        Ok(s) => s,
        Err(e) => return End::Lost(e.to_string()),
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut decoder = Decoder::new(Limits {
        max_bulk_len: MAX_FRAME,
        max_elements: 1 << 24,
        ..Limits::default()
    })
    .inline(false);
    let handshake = tokio::time::timeout(
        config.connect_timeout,
        subscribe(&mut stream, &mut buf, &mut decoder, subscribed),
    )
    .await;
    match handshake {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return End::Lost(e),
        Err(_) => return End::Lost("tracking handshake timed out".into()),
    }
    tracing::debug!(
        prefixes = subscribed.len(),
        "near cache: tracking link subscribed"
    );
    inner.enable(Arc::clone(&policy));
    let mut current = policy;
    let mut tick = tokio::time::interval(POLICY_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_ping = Instant::now();
    let mut unanswered: Option<Instant> = None;
    loop {
        // Everything already buffered first.
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Frame::Push(items))) => on_push(inner, items),
                Ok(Some(Frame::Error(e))) => {
                    return End::Lost(String::from_utf8_lossy(&e).into_owned());
                }
                Ok(Some(_)) => unanswered = None, // a PONG
                Ok(None) => break,
                Err(e) => return End::Lost(format!("protocol error: {e}")),
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) => return End::Lost("connection closed".into()),
                Ok(_) => {}
                Err(e) => return End::Lost(e.to_string()),
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if unanswered.is_some_and(|t| now.duration_since(t) >= PING_TIMEOUT) {
                    return End::Lost(format!("ping unanswered for {PING_TIMEOUT:?}"));
                }
                if unanswered.is_none() && now.duration_since(last_ping) >= PING_EVERY {
                    let mut ping = BytesMut::new();
                    encode::command(&mut ping, &[b"PING"]);
                    if let Err(e) = stream.write_all(&ping).await {
                        return End::Lost(e.to_string());
                    }
                    last_ping = now;
                    unanswered = Some(now);
                }
                let latest = inner.policy.load_full();
                if !Arc::ptr_eq(&latest, &current) {
                    if prefixes(&latest).as_slice() != subscribed {
                        return End::Resubscribe;
                    }
                    inner.enable(Arc::clone(&latest));
                    current = latest;
                }
            }
        }
    }
}

/// `HELLO 3`, a name, `CLIENT TRACKING ON BCAST [PREFIX p ...]`; checks the replies.
async fn subscribe(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    prefixes: &[Vec<u8>],
) -> Result<(), String> {
    let mut req = BytesMut::new();
    encode::command(&mut req, &[b"HELLO", b"3", b"SETNAME", LINK_NAME]);
    let mut tracking: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"ON", b"BCAST"];
    for p in prefixes {
        tracking.extend([&b"PREFIX"[..], p]);
    }
    encode::command(&mut req, &tracking);
    stream.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut replies = 0;
    while replies < 2 {
        match decoder.decode(buf) {
            Ok(Some(Frame::Error(e) | Frame::BulkError(e))) => {
                return Err(format!("tracking refused: {}", String::from_utf8_lossy(&e)));
            }
            Ok(Some(Frame::Push(_))) => {}
            Ok(Some(_)) => replies += 1,
            Ok(None) => {
                if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
                    return Err("connection closed during the tracking handshake".into());
                }
            }
            Err(e) => return Err(format!("protocol error: {e}")),
        }
    }
    Ok(())
}

/// `>2 invalidate [key ...]` or `>2 invalidate _` (flush).
fn on_push(inner: &Inner, items: Vec<Frame>) {
    let mut items = items.into_iter();
    let is_invalidate = matches!(items.next(), Some(Frame::Bulk(b)) if b.as_ref() == b"invalidate");
    if !is_invalidate {
        return;
    }
    match items.next() {
        Some(Frame::Array(keys) | Frame::Set(keys)) => {
            for k in keys {
                if let Frame::Bulk(k) = k {
                    inner.invalidate(&k);
                }
            }
        }
        Some(Frame::Null | Frame::NullArray | Frame::NullBulk) => {
            inner.versions.bump_all();
            inner.flush_entries();
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn prefixes_do_not_overlap() {
        let p = Policy::from_yaml_str(
            "rules:\n  - keys: 'product:*'\n    near_cache: { ttl: 1s, max_entries: 10 }\n  - keys: 'product:sku:*'\n    near_cache: { ttl: 1s, max_entries: 10 }\n  - keys: 'user:?'\n    near_cache: { ttl: 1s, max_entries: 10 }\n  - keys: 'x:*'\n  - commands: [SET]\n    keys: 'y:*'\n    near_cache: { ttl: 1s, max_entries: 10 }\n",
        )
        .unwrap();
        assert_eq!(prefixes(&p), vec![b"product:".to_vec(), b"user:".to_vec()]);
        let all = Policy::from_yaml_str(
            "rules:\n  - keys: 'a:*'\n    near_cache: { ttl: 1s, max_entries: 10 }\n  - keys: '*:b'\n    near_cache: { ttl: 1s, max_entries: 10 }\n",
        )
        .unwrap();
        assert!(prefixes(&all).is_empty());
    }
}
