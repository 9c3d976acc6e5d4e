//! Sampled `tracing` spans for client commands.
//!
//! RESP commands are too cheap to trace each one, so one command in
//! [`ProxyConfig::trace_sample`](crate::ProxyConfig::trace_sample) gets a
//! `cache.command` span (`otel.kind = "server"`, `otel.name` = the command
//! class). Sampling is a per-connection countdown (no shared atomic), started
//! at an offset derived from the connection number so that short connections
//! are sampled too. With sampling off the cost is one branch per command; with
//! it on but no subscriber interested, `info_span!` returns a disabled span
//! after a cached interest check.
//!
//! The proxy receives no trace context from Redis clients, so every span is a
//! root (`parent: None`). Every sampled span covers its command from the
//! moment it is read until its reply has been written to the client's socket
//! (the writer flushes before closing it), so its duration is the proxy's
//! latency for that command: its batch's round trip for a forwarded command,
//! the wait behind earlier replies for a local one. A batch carries at most
//! [`MAX_BATCH_SPANS`] spans: a further sampled command starts a new batch
//! (only when sampling nearly every command). Commands on a pinned
//! connection get a `cache.command` *event* instead of a span: their
//! replies stream back from Redis unframed (pushes, `CLIENT REPLY OFF`,
//! subscriptions), so there is no point at which a reply is known to be
//! written, and a span ended anywhere else would be a fake.

use std::num::NonZeroU32;

use tracing::Span;

use crate::resp::Command;

/// Sampled spans one batch carries at most (its bound; see the module docs).
pub(crate) const MAX_BATCH_SPANS: usize = 8;

/// A per-connection 1-in-N countdown.
#[derive(Debug)]
pub(crate) struct Sampler {
    every: u32,
    left: u32,
}

impl Sampler {
    /// `every = None` never samples. `seed` spreads the first sample of each
    /// connection over the period.
    pub(crate) fn new(every: Option<NonZeroU32>, seed: u64) -> Self {
        match every {
            None => Self { every: 0, left: 0 },
            Some(n) => Self {
                every: n.get(),
                left: (seed % u64::from(n.get())) as u32 + 1,
            },
        }
    }

    /// Whether the next [`tick`](Self::tick) will sample (without ticking).
    #[inline]
    pub(crate) const fn next_is_sampled(&self) -> bool {
        self.every != 0 && self.left == 1
    }

    /// Whether the next command is sampled.
    #[inline]
    pub(crate) fn tick(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.left -= 1;
        if self.left == 0 {
            self.left = self.every;
            return true;
        }
        false
    }
}

/// The class a command is reported under (`otel.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A key read (`GET`, `HGETALL`, ...).
    Read,
    /// A write (`SET`, `DEL`, `INCR`, ...).
    Write,
    /// Server or connection commands forwarded to Redis (`PING`, `INFO`, ...).
    Server,
    /// Scripts (`EVAL`, `FCALL`, ...).
    Script,
    /// Anything else forwarded over the pool.
    Other,
    /// Answered by the proxy itself (`AUTH`, `QUIT`, `NEXUS.*`, refusals).
    Local,
    /// Sent on a pinned connection (transactions, blocking, pub/sub, ...).
    Pinned,
}

impl Class {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Server => "server",
            Self::Script => "script",
            Self::Other => "other",
            Self::Local => "local",
            Self::Pinned => "pinned",
        }
    }

    /// Classifies a forwarded command (only called for sampled commands).
    pub(crate) fn of_forwarded(cmd: &Command<'_>) -> Self {
        const READ: &[&[u8]] = &[
            b"GET",
            b"MGET",
            b"GETRANGE",
            b"STRLEN",
            b"EXISTS",
            b"TTL",
            b"PTTL",
            b"TYPE",
            b"HGET",
            b"HMGET",
            b"HGETALL",
            b"HEXISTS",
            b"HLEN",
            b"HKEYS",
            b"HVALS",
            b"LRANGE",
            b"LLEN",
            b"LINDEX",
            b"SMEMBERS",
            b"SISMEMBER",
            b"SCARD",
            b"ZRANGE",
            b"ZSCORE",
            b"ZCARD",
            b"ZRANK",
            b"XRANGE",
            b"XREVRANGE",
            b"XLEN",
            b"XREAD",
            b"SCAN",
            b"HSCAN",
            b"SSCAN",
            b"ZSCAN",
            b"KEYS",
            b"PFCOUNT",
        ];
        const WRITE: &[&[u8]] = &[
            b"SET",
            b"SETEX",
            b"PSETEX",
            b"SETNX",
            b"MSET",
            b"MSETNX",
            b"GETSET",
            b"GETDEL",
            b"GETEX",
            b"DEL",
            b"UNLINK",
            b"INCR",
            b"INCRBY",
            b"INCRBYFLOAT",
            b"DECR",
            b"DECRBY",
            b"APPEND",
            b"EXPIRE",
            b"PEXPIRE",
            b"EXPIREAT",
            b"PERSIST",
            b"HSET",
            b"HSETNX",
            b"HMSET",
            b"HDEL",
            b"HINCRBY",
            b"LPUSH",
            b"RPUSH",
            b"LPOP",
            b"RPOP",
            b"LSET",
            b"LREM",
            b"LTRIM",
            b"SADD",
            b"SREM",
            b"SPOP",
            b"ZADD",
            b"ZREM",
            b"ZINCRBY",
            b"XADD",
            b"XDEL",
            b"XTRIM",
            b"PFADD",
            b"RENAME",
            b"COPY",
            b"FLUSHDB",
            b"FLUSHALL",
        ];
        const SERVER: &[&[u8]] = &[
            b"PING", b"ECHO", b"INFO", b"CONFIG", b"CLIENT", b"DBSIZE", b"TIME", b"COMMAND",
            b"SELECT", b"HELLO", b"MEMORY", b"SLOWLOG", b"LATENCY",
        ];
        const SCRIPT: &[&[u8]] = &[
            b"EVAL",
            b"EVALSHA",
            b"EVAL_RO",
            b"EVALSHA_RO",
            b"FCALL",
            b"FCALL_RO",
            b"SCRIPT",
            b"FUNCTION",
        ];
        let name = cmd.name();
        let any = |list: &[&[u8]]| list.iter().any(|n| name.eq_ignore_ascii_case(n));
        if any(READ) {
            Self::Read
        } else if any(WRITE) {
            Self::Write
        } else if any(SERVER) {
            Self::Server
        } else if any(SCRIPT) {
            Self::Script
        } else {
            Self::Other
        }
    }
}

/// Longest command name copied into `db.operation.name`.
const MAX_NAME: usize = 32;

/// A root `cache.command` span for `cmd` in `class`.
pub(crate) fn span(cmd: &Command<'_>, class: Class) -> Span {
    let name = cmd.name();
    let name = String::from_utf8_lossy(&name[..name.len().min(MAX_NAME)]).to_ascii_uppercase();
    tracing::info_span!(
        target: "nexus_cache::command",
        parent: None,
        "cache.command",
        otel.kind = "server",
        otel.name = class.as_str(),
        db.system.name = "redis",
        db.operation.name = %name,
    )
}

/// A root `cache.command` event for `cmd` in `class` (pinned commands,
/// whose reply cannot be matched; see the module docs).
pub(crate) fn event(cmd: &Command<'_>, class: Class) {
    let name = cmd.name();
    let name = String::from_utf8_lossy(&name[..name.len().min(MAX_NAME)]).to_ascii_uppercase();
    tracing::event!(
        target: "nexus_cache::command",
        parent: None,
        tracing::Level::INFO,
        { otel.name = class.as_str(), db.system.name = "redis", db.operation.name = %name },
        "cache.command"
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sampler_samples_one_in_n() {
        let mut off = Sampler::new(None, 7);
        assert!((0..1000).all(|_| !off.tick()));
        let mut s = Sampler::new(NonZeroU32::new(10), 3);
        let hits: Vec<usize> = (0..30).filter(|_| s.tick()).collect();
        assert_eq!(hits.len(), 3);
        let hits: Vec<usize> = (0..30).filter(|_| s.tick()).collect();
        assert_eq!(hits.len(), 3);
        let mut every = Sampler::new(NonZeroU32::new(1), 99);
        assert!((0..10).all(|_| every.next_is_sampled() && every.tick()));
        let mut s = Sampler::new(NonZeroU32::new(3), 0);
        let peeked: Vec<bool> = (0..9)
            .map(|_| {
                let p = s.next_is_sampled();
                assert_eq!(p, s.tick());
                p
            })
            .collect();
        assert_eq!(peeked.iter().filter(|p| **p).count(), 3);
        assert!(!Sampler::new(None, 0).next_is_sampled());
    }

    #[test]
    fn classes() {
        let class = |frame: &[u8]| Class::of_forwarded(&Command::parse(frame).unwrap());
        assert_eq!(class(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n"), Class::Read);
        assert_eq!(
            class(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"),
            Class::Write
        );
        assert_eq!(class(b"PING\r\n"), Class::Server);
        assert_eq!(class(b"*1\r\n$6\r\nOBJECT\r\n"), Class::Other);
    }
}
