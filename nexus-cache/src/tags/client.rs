//! [`Tagger`]: tag invalidation over the `redis` crate.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use redis::aio::ConnectionLike;
use redis::{ErrorKind, FromRedisValue, RedisError, ServerErrorKind};

use super::script;
use crate::policy::metrics::MechanismMetrics;

/// How long a written key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `EX seconds`.
    Seconds(u64),
    /// `PX milliseconds`.
    Millis(u64),
}

/// A failed tag operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TagError {
    /// Redis or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Invalid argument (empty tag, no keys).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
}

/// A script and the SHA Redis gave it, loaded lazily.
#[derive(Debug)]
struct Loaded {
    source: &'static str,
    sha: Mutex<Option<Arc<str>>>,
}

impl Loaded {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: Mutex::new(None),
        }
    }

    fn get(&self) -> Option<Arc<str>> {
        self.sha
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn load<C: ConnectionLike + Send>(&self, con: &mut C) -> Result<Arc<str>, TagError> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.source)
            .query_async(con)
            .await?;
        let sha: Arc<str> = sha.into();
        *self.sha.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&sha));
        Ok(sha)
    }
}

/// Tags keys and invalidates tags, atomically, in a Redis reached through the
/// `redis` crate. Cheap to share (`Arc`); the scripts are loaded on first use
/// and reloaded after `NOSCRIPT`. Works with any async connection
/// (`MultiplexedConnection`, `ConnectionManager`, ...).
#[derive(Debug)]
pub struct Tagger {
    prefix: String,
    tag: Loaded,
    invalidate: Loaded,
    write: Loaded,
    metrics: Option<Arc<MechanismMetrics>>,
}

impl Default for Tagger {
    fn default() -> Self {
        Self::new()
    }
}

impl Tagger {
    /// A tagger storing tag sets under `tag:<name>`.
    pub fn new() -> Self {
        Self::with_prefix("tag:")
    }

    /// A tagger storing tag sets under `<prefix><name>`.
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            tag: Loaded::new(script::TAG),
            invalidate: Loaded::new(script::INVALIDATE),
            write: Loaded::new(script::WRITE_AND_TAG),
            metrics: None,
        }
    }

    /// Counts invalidations and deleted keys into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<MechanismMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The name of the Redis set holding `tag`'s keys.
    pub fn set_name(&self, tag: &str) -> String {
        format!("{}{tag}", self.prefix)
    }

    /// Adds `keys` to `tag`. Returns how many were not tagged yet.
    pub async fn tag<C, K>(&self, con: &mut C, tag: &str, keys: &[K]) -> Result<u64, TagError>
    where
        C: ConnectionLike + Send,
        K: AsRef<[u8]>,
    {
        if tag.is_empty() {
            return Err(TagError::Invalid("empty tag"));
        }
        if keys.is_empty() {
            return Err(TagError::Invalid("no keys to tag"));
        }
        let set = self.set_name(tag);
        let mut all: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
        all.push(set.as_bytes());
        all.extend(keys.iter().map(AsRef::as_ref));
        self.call(con, &self.tag, &all, &[]).await
    }

    /// Deletes every key tagged with `tag`, and the tag. Returns how many
    /// tagged keys existed.
    pub async fn invalidate<C>(&self, con: &mut C, tag: &str) -> Result<u64, TagError>
    where
        C: ConnectionLike + Send,
    {
        if tag.is_empty() {
            return Err(TagError::Invalid("empty tag"));
        }
        let set = self.set_name(tag);
        let n: u64 = self
            .call(con, &self.invalidate, &[set.as_bytes()], &[])
            .await?;
        if let Some(m) = &self.metrics {
            m.invalidations.fetch_add(1, Relaxed);
            m.invalidated_keys.fetch_add(n, Relaxed);
        }
        Ok(n)
    }

    /// `SET key value [EX|PX n]` and tags the key with every tag in `tags`,
    /// in one atomic step.
    pub async fn set_tagged<C>(
        &self,
        con: &mut C,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        expiry: Option<Expiry>,
        tags: &[&str],
    ) -> Result<(), TagError>
    where
        C: ConnectionLike + Send,
    {
        let key = key.as_ref();
        if tags.iter().any(|t| t.is_empty()) {
            return Err(TagError::Invalid("empty tag"));
        }
        let sets: Vec<String> = tags.iter().map(|t| self.set_name(t)).collect();
        let mut keys: Vec<&[u8]> = Vec::with_capacity(sets.len() + 1);
        keys.push(key);
        keys.extend(sets.iter().map(|s| s.as_bytes()));
        let ttl;
        let mut args: Vec<&[u8]> = vec![b"SET", key, value.as_ref()];
        match expiry {
            Some(Expiry::Seconds(s)) => {
                ttl = s.to_string();
                args.extend([b"EX".as_slice(), ttl.as_bytes()]);
            }
            Some(Expiry::Millis(ms)) => {
                ttl = ms.to_string();
                args.extend([b"PX".as_slice(), ttl.as_bytes()]);
            }
            None => {}
        }
        let _: redis::Value = self.call(con, &self.write, &keys, &args).await?;
        Ok(())
    }

    /// `EVALSHA`, loading the script first if needed and once more after `NOSCRIPT`.
    async fn call<C, T>(
        &self,
        con: &mut C,
        script: &Loaded,
        keys: &[&[u8]],
        args: &[&[u8]],
    ) -> Result<T, TagError>
    where
        C: ConnectionLike + Send,
        T: FromRedisValue,
    {
        let mut reloaded = false;
        loop {
            let sha = match script.get() {
                Some(sha) => sha,
                None => {
                    reloaded = true;
                    script.load(con).await?
                }
            };
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&*sha).arg(keys.len());
            for k in keys {
                cmd.arg(*k);
            }
            for a in args {
                cmd.arg(*a);
            }
            match cmd.query_async::<T>(con).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) && !reloaded => {
                    tracing::debug!("script not in redis (NOSCRIPT); loading it again");
                    *script.sha.lock().unwrap_or_else(PoisonError::into_inner) = None;
                }
                other => return other.map_err(TagError::from),
            }
        }
    }
}
