//! [`RedisBlocklist`]: the shared blocklist written by the consumer service,
//! kept as a local view so the request path never touches Redis.
//!
//! Layout (owned by `nexus-consumer`): `nexus:blocked:<ip>` keys with an expiry,
//! a sorted set `nexus:blocklist:index` scored by block expiry (Unix ms), and a
//! channel `nexus:blocklist` carrying `block <ip> <expires_at_ms>`. The view is
//! loaded from the index at start and every `refresh`, and updated from the
//! channel in between, so a block takes effect within one pub/sub hop. While
//! Redis is unreachable the last view is kept (its entries still expire) and the
//! task reconnects with a back-off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;

use crate::blocklist::Blocklist;

/// Sorted set of blocked IPs scored by expiry (Unix ms).
pub const BLOCKLIST_INDEX_KEY: &str = "nexus:blocklist:index";
/// Channel announcing new blocks.
pub const BLOCKLIST_CHANNEL: &str = "nexus:blocklist";
/// Most blocked IPs held locally; further entries are ignored with a warning.
pub const MAX_BLOCKED: usize = 1_000_000;
/// Bound on one Redis round trip.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

type View = Arc<RwLock<HashMap<IpAddr, u64>>>;

/// A Redis-fed blocklist view; dropping it stops its background task.
#[derive(Debug)]
pub struct RedisBlocklist {
    view: View,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisBlocklist {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBlocklist {
    /// Starts following the blocklist at `url` (must run inside a tokio runtime).
    /// Returns at once; the first load happens in the background.
    pub fn start(url: &str, refresh: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let view: View = Arc::default();
        let task = tokio::spawn(follow(client, view.clone(), refresh));
        Ok(Self { view, task })
    }
}

impl Blocklist for RedisBlocklist {
    fn is_blocked(&self, ip: IpAddr) -> bool {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        !view.is_empty() && view.get(&ip).is_some_and(|&until| until > now_ms())
    }

    fn len(&self) -> usize {
        self.view.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn sample(&self, max: usize) -> Vec<IpAddr> {
        let now = now_ms();
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.iter()
            .filter(|&(_, &until)| until > now)
            .take(max)
            .map(|(ip, _)| *ip)
            .collect()
    }
}

fn apply_message(view: &View, payload: &str) {
    let mut parts = payload.split_whitespace();
    let (Some("block"), Some(ip), Some(until)) = (parts.next(), parts.next(), parts.next()) else {
        tracing::debug!(payload, "ignored blocklist message");
        return;
    };
    let (Ok(ip), Ok(until)) = (ip.parse::<IpAddr>(), until.parse::<u64>()) else {
        tracing::warn!(payload, "malformed blocklist message");
        return;
    };
    let mut v = view.write().unwrap_or_else(|p| p.into_inner());
    if v.len() >= MAX_BLOCKED && !v.contains_key(&ip) {
        tracing::warn!(max = MAX_BLOCKED, "blocklist view full; block ignored");
        return;
    }
    tracing::info!(%ip, until_ms = until, "IP blocked");
    v.insert(ip.to_canonical(), until);
}

async fn load(
    con: &mut redis::aio::MultiplexedConnection,
    view: &View,
) -> redis::RedisResult<usize> {
    let now = now_ms();
    let rows: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
        .arg(BLOCKLIST_INDEX_KEY)
        .arg(now)
        .arg("+inf")
        .arg("WITHSCORES")
        .arg("LIMIT")
        .arg(0)
        .arg(MAX_BLOCKED)
        .query_async(con)
        .await?;
    let fresh: HashMap<IpAddr, u64> = rows
        .into_iter()
        .filter_map(|(ip, until)| Some((ip.parse::<IpAddr>().ok()?.to_canonical(), until as u64)))
        .collect();
    let n = fresh.len();
    *view.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(n)
}

async fn session(client: &redis::Client, view: &View, refresh: Duration) -> redis::RedisResult<()> {
    let mut pubsub = tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    pubsub.subscribe(BLOCKLIST_CHANNEL).await?;
    let mut con = tokio::time::timeout(REDIS_TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))??;
    // Subscribe first, then load: a block published in between is not missed.
    let n = load(&mut con, view).await?;
    tracing::info!(blocked = n, "blocklist loaded from redis");
    let mut messages = pubsub.on_message();
    let mut tick = tokio::time::interval(refresh);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(m) => apply_message(view, &m.get_payload::<String>().unwrap_or_default()),
                None => return Err(redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed"))),
            },
            _ = tick.tick() => {
                tokio::time::timeout(REDIS_TIMEOUT, load(&mut con, view))
                    .await
                    .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "refresh timed out")))??;
            }
        }
    }
}

async fn follow(client: redis::Client, view: View, refresh: Duration) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if let Err(e) = session(&client, &view, refresh).await {
            tracing::warn!(error = %e, retry_in = ?backoff, "blocklist redis link down; keeping the last view");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
