//! What a command does to keys, as far as the live mechanisms care: reads
//! (observed by the hot-key detector, candidates for singleflight) and writes
//! (invalidate flights of their keys; default TTL and auto-tagging).
//!
//! Anything not listed as a read is treated as a write. Writes whose key
//! positions are not listed here (scripts, `FLUSHDB`, `SWAPDB`, ...) invalidate
//! every flight, which is always safe.

use crate::resp::Command;

/// Read-only commands whose (only) key is the first argument.
const READ_KEY1: &[&[u8]] = &[
    b"GET",
    b"STRLEN",
    b"GETRANGE",
    b"SUBSTR",
    b"EXISTS",
    b"TTL",
    b"PTTL",
    b"TYPE",
    b"HGET",
    b"HMGET",
    b"HGETALL",
    b"HLEN",
    b"HEXISTS",
    b"HKEYS",
    b"HVALS",
    b"HSTRLEN",
    b"LRANGE",
    b"LLEN",
    b"LINDEX",
    b"SMEMBERS",
    b"SISMEMBER",
    b"SMISMEMBER",
    b"SCARD",
    b"ZRANGE",
    b"ZSCORE",
    b"ZMSCORE",
    b"ZCARD",
    b"ZRANK",
    b"ZREVRANK",
    b"ZREVRANGE",
    b"ZRANGEBYSCORE",
    b"ZCOUNT",
    b"XRANGE",
    b"XLEN",
    b"GETBIT",
    b"BITCOUNT",
];

/// Read-only commands without keys worth tracking (or with many).
const READ_OTHER: &[&[u8]] = &[
    b"MGET",
    b"PING",
    b"ECHO",
    b"DBSIZE",
    b"INFO",
    b"TIME",
    b"SCAN",
    b"KEYS",
    b"RANDOMKEY",
    b"COMMAND",
    b"LASTSAVE",
    b"XREAD",
    b"HELLO",
    b"SELECT",
    b"CLIENT",
    b"CONFIG",
    b"SCRIPT",
    b"PUBLISH",
    b"SPUBLISH",
    b"PUBSUB",
    b"SLOWLOG",
    b"LATENCY",
    b"MEMORY",
    b"OBJECT",
    b"EXEC",
    b"DISCARD",
    b"UNWATCH",
    b"ROLE",
];

/// Writes that touch every argument after the name as a key.
const WRITE_ALL_ARGS: &[&[u8]] = &[b"DEL", b"UNLINK", b"TOUCH"];

/// Writes touching the first two arguments.
const WRITE_KEY12: &[&[u8]] = &[
    b"RENAME",
    b"RENAMENX",
    b"COPY",
    b"SMOVE",
    b"LMOVE",
    b"RPOPLPUSH",
];

/// Writes touching keys and values alternately (`MSET k v k v`).
const WRITE_PAIRS: &[&[u8]] = &[b"MSET", b"MSETNX"];

/// Writes whose only key is the first argument.
const WRITE_KEY1: &[&[u8]] = &[
    b"SET",
    b"SETEX",
    b"PSETEX",
    b"SETNX",
    b"GETSET",
    b"GETDEL",
    b"GETEX",
    b"APPEND",
    b"SETRANGE",
    b"SETBIT",
    b"INCR",
    b"INCRBY",
    b"INCRBYFLOAT",
    b"DECR",
    b"DECRBY",
    b"EXPIRE",
    b"PEXPIRE",
    b"EXPIREAT",
    b"PEXPIREAT",
    b"PERSIST",
    b"HSET",
    b"HSETNX",
    b"HMSET",
    b"HDEL",
    b"HINCRBY",
    b"HINCRBYFLOAT",
    b"LPUSH",
    b"RPUSH",
    b"LPUSHX",
    b"RPUSHX",
    b"LPOP",
    b"RPOP",
    b"LSET",
    b"LREM",
    b"LTRIM",
    b"LINSERT",
    b"SADD",
    b"SREM",
    b"SPOP",
    b"ZADD",
    b"ZREM",
    b"ZINCRBY",
    b"ZPOPMIN",
    b"ZPOPMAX",
    b"XADD",
    b"XDEL",
    b"XTRIM",
    b"PFADD",
    b"RESTORE",
];

/// What a command means for the mechanisms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A read of the key in argument 1.
    ReadKey,
    /// A read of `MGET`'s keys.
    ReadMany,
    /// No key effect (admin, keyless reads).
    Neutral,
    /// A write to the key in argument 1.
    WriteKey,
    /// A write to the keys at these argument positions.
    WriteKeys(Positions),
    /// A write to keys not known here: invalidates every flight.
    WriteUnknown,
}

/// Argument positions of a multi-key write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Positions {
    /// Every argument.
    All,
    /// Arguments 1 and 2.
    First2,
    /// Arguments 1, 3, 5, ...
    Pairs,
}

fn listed(list: &[&[u8]], name: &[u8]) -> bool {
    list.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// Classifies `cmd`. A linear scan of short lists, filtered by first byte and
/// length first, so the common commands cost a few comparisons.
pub(crate) fn kind(cmd: &Command<'_>) -> Kind {
    let name = cmd.name();
    // The two commands of nearly every workload, before the list scans.
    if cmd.len() >= 2 && name.len() == 3 {
        if name.eq_ignore_ascii_case(b"GET") {
            return Kind::ReadKey;
        }
        if name.eq_ignore_ascii_case(b"SET") {
            return Kind::WriteKey;
        }
    }
    if cmd.len() >= 2 && listed(READ_KEY1, name) {
        return Kind::ReadKey;
    }
    if cmd.len() >= 2 && listed(WRITE_KEY1, name) {
        return Kind::WriteKey;
    }
    if name.eq_ignore_ascii_case(b"MGET") {
        return Kind::ReadMany;
    }
    if listed(READ_OTHER, name) {
        return Kind::Neutral;
    }
    if listed(WRITE_ALL_ARGS, name) {
        return Kind::WriteKeys(Positions::All);
    }
    if listed(WRITE_KEY12, name) {
        return Kind::WriteKeys(Positions::First2);
    }
    if listed(WRITE_PAIRS, name) {
        return Kind::WriteKeys(Positions::Pairs);
    }
    Kind::WriteUnknown
}

/// Calls `f` with every key a [`Kind::WriteKeys`] command writes.
pub(crate) fn for_each_written(cmd: &Command<'_>, pos: Positions, mut f: impl FnMut(&[u8])) {
    let keep = |i: usize| match pos {
        Positions::All => true,
        Positions::First2 => i <= 2,
        Positions::Pairs => i % 2 == 1,
    };
    for (i, a) in (1..).zip(cmd.args()) {
        if keep(i) {
            f(a);
        }
    }
}

/// Whether a `SET` command already says what happens to the TTL.
pub(crate) fn set_has_expiry(cmd: &Command<'_>) -> bool {
    cmd.args().skip(2).any(|a| {
        [&b"EX"[..], b"PX", b"EXAT", b"PXAT", b"KEEPTTL"]
            .iter()
            .any(|o| a.eq_ignore_ascii_case(o))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn k(line: &str) -> Kind {
        let frame = format!("{line}\r\n");
        kind(&Command::parse(frame.as_bytes()).unwrap())
    }

    #[test]
    fn kinds() {
        assert_eq!(k("get a"), Kind::ReadKey);
        assert_eq!(k("MGET a b"), Kind::ReadMany);
        assert_eq!(k("SET a 1"), Kind::WriteKey);
        assert_eq!(k("del a b"), Kind::WriteKeys(Positions::All));
        assert_eq!(k("MSET a 1 b 2"), Kind::WriteKeys(Positions::Pairs));
        assert_eq!(k("EVAL x 0"), Kind::WriteUnknown);
        assert_eq!(k("FLUSHDB"), Kind::WriteUnknown);
        assert_eq!(k("PING"), Kind::Neutral);
    }

    #[test]
    fn written_keys_and_expiry() {
        let frame = b"MSET a 1 b 2\r\n";
        let cmd = Command::parse(frame).unwrap();
        let mut keys = Vec::new();
        for_each_written(&cmd, Positions::Pairs, |k| keys.push(k.to_vec()));
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec()]);
        let set = Command::parse(b"SET a 1 NX px 5\r\n").unwrap();
        assert!(set_has_expiry(&set));
        assert!(!set_has_expiry(&Command::parse(b"SET a EX\r\n").unwrap()));
    }
}
