//! The shared blocklist in Redis: written here, read by every gateway.
//!
//! Layout (all written in one `MULTI`/`EXEC`):
//!
//! | what | Redis | meaning |
//! |---|---|---|
//! | one key per blocked IP | `SET nexus:blocked:<ip> <json> PX <block_ms>` | authoritative; expires on its own |
//! | index for a full load | `ZADD nexus:blocklist:index <expires_at_ms> <ip>` | score = Unix ms when the block ends; entries with a past score are stale |
//! | change feed | `PUBLISH nexus:blocklist "block <ip> <expires_at_ms>"` | lets gateways update their local view at once |
//!
//! A gateway loads `ZRANGEBYSCORE nexus:blocklist:index <now_ms> +inf` at
//! start (and periodically, as a safety net for missed messages), applies
//! `block` messages from the channel, and treats an IP as blocked until its
//! `expires_at_ms`. `<json>` is `{"ip":..,"reason":..,"hits":..,"blockedAt":..,"expiresAt":..}`
//! (times in Unix ms) for operators. `<ip>` is the textual IP as the gateway
//! reported it in the event.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;

/// Prefix of the per-IP block keys: `nexus:blocked:<ip>`.
pub const BLOCKED_KEY_PREFIX: &str = "nexus:blocked:";
/// Sorted set of blocked IPs scored by block expiry (Unix ms).
pub const BLOCKLIST_INDEX_KEY: &str = "nexus:blocklist:index";
/// Pub/sub channel announcing new blocks.
pub const BLOCKLIST_CHANNEL: &str = "nexus:blocklist";

/// Bound on one Redis round trip.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis failures of the blocklist writer.
#[derive(Debug, thiserror::Error)]
pub enum BlocklistError {
    /// The Redis command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the bound.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// Writes blocks to Redis; reconnects lazily after a failure.
#[derive(Debug)]
pub struct BlocklistWriter {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
}

/// The key holding the block of `ip`.
pub fn blocked_key(ip: &str) -> String {
    format!("{BLOCKED_KEY_PREFIX}{ip}")
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl BlocklistWriter {
    /// A writer for `redis_url`; connects on first use.
    pub fn new(redis_url: &str) -> Result<Self, BlocklistError> {
        Ok(Self {
            client: redis::Client::open(redis_url)?,
            conn: None,
        })
    }

    async fn conn(&mut self) -> Result<&mut MultiplexedConnection, BlocklistError> {
        if self.conn.is_none() {
            let c = tokio::time::timeout(
                REDIS_TIMEOUT,
                self.client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| BlocklistError::Timeout(REDIS_TIMEOUT))??;
            self.conn = Some(c);
        }
        self.conn
            .as_mut()
            .ok_or(BlocklistError::Timeout(REDIS_TIMEOUT))
    }

    /// Blocks `ip` for `duration`; returns when the block ends (Unix ms).
    pub async fn block(
        &mut self,
        ip: &str,
        duration: Duration,
        reason: &str,
        hits: u32,
    ) -> Result<u64, BlocklistError> {
        let now = unix_ms(SystemTime::now());
        let ms = duration.as_millis().max(1) as u64;
        let expires = now + ms;
        let value = serde_json::json!({
            "ip": ip, "reason": reason, "hits": hits, "blockedAt": now, "expiresAt": expires,
        })
        .to_string();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(blocked_key(ip))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("ZADD")
            .arg(BLOCKLIST_INDEX_KEY)
            .arg(expires)
            .arg(ip)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(BLOCKLIST_INDEX_KEY)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("PUBLISH")
            .arg(BLOCKLIST_CHANNEL)
            .arg(format!("block {ip} {expires}"))
            .ignore();
        let conn = self.conn().await?;
        let res = tokio::time::timeout(REDIS_TIMEOUT, pipe.query_async::<()>(conn)).await;
        match res {
            Ok(Ok(())) => Ok(expires),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e.into())
            }
            Err(_) => {
                self.conn = None;
                Err(BlocklistError::Timeout(REDIS_TIMEOUT))
            }
        }
    }
}
