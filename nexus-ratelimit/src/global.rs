//! Global limits shared by many processes through Redis (feature `redis`).
//!
//! Every process runs the same GCRA step as [`KeyedLimiter`], but on a Redis
//! key, in one Lua script (atomic, one round trip, Redis's own `TIME` as the
//! clock so process clocks need not agree). A key expires from Redis as soon
//! as its bucket is full again, so Redis memory is bounded by the keys active
//! within one window.
//!
//! **When Redis is unreachable** (connect error, error reply, or no answer
//! within `timeout`) the check falls back as configured by [`Fallback`]:
//! `Local` (default) applies the same quota per process with an in-process
//! [`KeyedLimiter`] (so N processes admit up to N× the global rate),
//! `Allow` fails open, `Deny` fails closed (every request gets a 429).
//! Reconnection is automatic; the next successful call uses Redis again.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{Allowed, Decision, HeaderKey, KeyedLimiter, LimiterConfig, NotAllowed, Quota};

const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + period
if new_tat - tau > now then
  return {0, new_tat - tau - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, math.floor((now + tau - new_tat) / period), new_tat - now}
";

/// What to do when Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// Apply the quota per process with an in-process limiter (default).
    #[default]
    Local,
    /// Fail open: admit the request.
    Allow,
    /// Fail closed: reject the request.
    Deny,
}

/// Where a global decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Redis answered.
    Redis,
    /// Redis did not answer; the [`Fallback`] decided.
    Fallback,
}

/// Settings of a [`RedisLimiter`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisLimiterConfig {
    /// `redis://host:port[/db]` (or `rediss://`).
    pub url: String,
    /// Prefix of every Redis key (default `nexus:rl:`).
    pub prefix: String,
    /// The quota per key.
    pub quota: Quota,
    /// Deadline for one check, connection included (default 50 ms).
    pub timeout: Duration,
    /// Behaviour when Redis does not answer in time.
    pub fallback: Fallback,
    /// Settings of the local fallback limiter (its quota is `quota`).
    pub local: LimiterConfig,
}

impl RedisLimiterConfig {
    /// Defaults for `url`: seed quota, `nexus:rl:` prefix, 50 ms, local fallback.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "nexus:rl:".into(),
            quota: Quota::default(),
            timeout: Duration::from_millis(50),
            fallback: Fallback::Local,
            local: LimiterConfig::default(),
        }
    }
}

/// The Redis URL was rejected.
#[derive(Debug, thiserror::Error)]
#[error("invalid redis url: {0}")]
pub struct RedisConfigError(#[source] redis::RedisError);

/// A limiter whose buckets live in Redis, shared by every process using the
/// same Redis and prefix. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    script: redis::Script,
    quota: Quota,
    prefix: Box<[u8]>,
    timeout: Duration,
    fallback: Fallback,
    local: KeyedLimiter<Box<[u8]>>,
    redis_errors: AtomicU64,
}

impl RedisLimiter {
    /// Builds the limiter; connects lazily (a Redis that is down at start
    /// only means the fallback applies until it is up). Needs a tokio runtime.
    pub fn new(config: RedisLimiterConfig) -> Result<Self, RedisConfigError> {
        let client = redis::Client::open(config.url.as_str()).map_err(RedisConfigError)?;
        let mgr = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn =
            ConnectionManager::new_lazy_with_config(client, mgr).map_err(RedisConfigError)?;
        let local = KeyedLimiter::new(
            LimiterConfig::new(config.quota).with_max_keys(config.local.max_keys()),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                script: redis::Script::new(SCRIPT),
                quota: config.quota,
                prefix: config.prefix.into_bytes().into_boxed_slice(),
                timeout: config.timeout,
                fallback: config.fallback,
                local,
                redis_errors: AtomicU64::new(0),
            }),
        })
    }

    /// Takes one token from `key`'s global bucket.
    pub async fn check(&self, key: &[u8]) -> (Decision, Source) {
        let inner = &*self.inner;
        let mut redis_key = Vec::with_capacity(inner.prefix.len() + key.len());
        redis_key.extend_from_slice(&inner.prefix);
        redis_key.extend_from_slice(key);
        let period = inner.quota.period_nanos().div_ceil(1_000).max(1);
        let tau = period * u64::from(inner.quota.capacity());
        let mut conn = inner.conn.clone();
        let mut invocation = inner.script.key(redis_key);
        invocation.arg(period).arg(tau);
        let call = invocation.invoke_async::<(i64, i64, i64)>(&mut conn);
        match tokio::time::timeout(inner.timeout, call).await {
            Ok(Ok((admitted, a, b))) => (from_reply(admitted, a, b), Source::Redis),
            Ok(Err(e)) => self.fallback(key, &e.to_string()),
            Err(_) => self.fallback(key, "timed out"),
        }
    }

    fn fallback(&self, key: &[u8], why: &str) -> (Decision, Source) {
        let inner = &*self.inner;
        let n = inner.redis_errors.fetch_add(1, Ordering::Relaxed);
        if n.is_power_of_two() || n == 0 {
            tracing::warn!(error = why, fallback = ?inner.fallback, failures = n + 1, "global rate limit: redis unavailable");
        }
        let decision = match inner.fallback {
            Fallback::Local => inner.local.check(&Box::from(key)),
            Fallback::Allow => Ok(Allowed::new(inner.quota.capacity(), Duration::ZERO)),
            Fallback::Deny => Err(NotAllowed::new(inner.quota.period(), inner.quota.window())),
        };
        (decision, Source::Fallback)
    }

    /// Checks that fell back because Redis did not answer.
    pub fn redis_errors(&self) -> u64 {
        self.inner.redis_errors.load(Ordering::Relaxed)
    }

    /// The quota per key.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("quota", &self.inner.quota)
            .field("fallback", &self.inner.fallback)
            .finish_non_exhaustive()
    }
}

fn from_reply(admitted: i64, a: i64, b: i64) -> Decision {
    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    if admitted == 1 {
        Ok(Allowed::new(u32::try_from(a).unwrap_or(0), us(b)))
    } else {
        Err(NotAllowed::new(us(a), us(b)))
    }
}

/// Keys that can name a Redis bucket.
pub trait RedisKey {
    /// Appends this key's bytes to `out`.
    fn write_key(&self, out: &mut Vec<u8>);
}

impl RedisKey for IpAddr {
    fn write_key(&self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        let _ = write!(out, "{self}");
    }
}

impl RedisKey for String {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for Arc<str> {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for HeaderKey {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for u64 {
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_string().as_bytes());
    }
}
