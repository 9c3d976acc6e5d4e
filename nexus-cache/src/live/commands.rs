//! What a command does to keys, as far as the live mechanisms care: reads
//! (observed by the hot-key detector, candidates for singleflight) and writes
//! (invalidate flights of their keys; default TTL and auto-tagging).
//!
//! Anything not listed as a read is treated as a write. Which commands
//! write is listed here; where their keys are comes from nexus-resp's key
//! table ([`Command::keys`]). Scripts (whose declared keys are known, but
//! which may write others), flushes, and writes not listed (`SWAPDB`,
//! `SORT ... STORE`, `BITOP`, module commands, ...) invalidate every flight,
//! which is always safe.

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
    b"TOUCH",
    b"EVAL_RO",
    b"EVALSHA_RO",
    b"FCALL_RO",
];

/// Writes to several keys, at the positions [`Command::keys`] names
/// (nexus-resp's key table; for `COPY` only the destination is written).
/// Stores and moves count their sources too: over-approximating only costs
/// an invalidation that was not needed.
const WRITE_KEYS: &[&[u8]] = &[
    b"DEL",
    b"UNLINK",
    b"MSET",
    b"MSETNX",
    b"RENAME",
    b"RENAMENX",
    b"COPY",
    b"SMOVE",
    b"LMOVE",
    b"RPOPLPUSH",
    b"SINTERSTORE",
    b"SUNIONSTORE",
    b"SDIFFSTORE",
    b"ZUNIONSTORE",
    b"ZINTERSTORE",
    b"ZDIFFSTORE",
    b"ZRANGESTORE",
    b"GEOSEARCHSTORE",
    b"PFMERGE",
    b"LMPOP",
    b"ZMPOP",
    b"BITOP",
];

/// Scripts and functions: they declare keys, but may write others.
const SCRIPTS: &[&[u8]] = &[b"EVAL", b"EVALSHA", b"FCALL"];

/// Writes of every key of the database (the pool's, for unpinned clients;
/// `SWAPDB` replaces all of them).
const FLUSHES: &[&[u8]] = &[b"FLUSHALL", b"FLUSHDB", b"SWAPDB"];

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
    /// A write to the keys [`for_each_written`] names.
    WriteKeys,
    /// `EVAL`, `EVALSHA`, `FCALL`: writes its declared keys
    /// ([`for_each_written`]) and possibly others.
    Script,
    /// `FLUSHALL`, `FLUSHDB`: every key.
    Flush,
    /// A write to keys not known here: invalidates every flight.
    WriteUnknown,
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
    if listed(WRITE_KEYS, name) {
        return Kind::WriteKeys;
    }
    if listed(SCRIPTS, name) {
        return Kind::Script;
    }
    if listed(FLUSHES, name) {
        return Kind::Flush;
    }
    Kind::WriteUnknown
}

/// Calls `f` with every key a [`Kind::WriteKey`], [`Kind::WriteKeys`] or
/// [`Kind::Script`] command writes (a script: the keys it declares).
pub(crate) fn for_each_written<'a>(cmd: &Command<'a>, f: impl FnMut(&'a [u8])) {
    if cmd.is(b"BITOP") {
        // `BITOP op destination source ...`: not in nexus-resp's table.
        cmd.args().skip(1).for_each(f);
        return;
    }
    // `COPY source destination [DB n] [REPLACE]` writes the destination only.
    let skip = usize::from(cmd.is(b"COPY"));
    cmd.keys().skip(skip).for_each(f);
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
        assert_eq!(k("del a b"), Kind::WriteKeys);
        assert_eq!(k("MSET a 1 b 2"), Kind::WriteKeys);
        assert_eq!(k("EVAL x 0"), Kind::Script);
        assert_eq!(k("fcall f 1 a"), Kind::Script);
        assert_eq!(k("FLUSHDB"), Kind::Flush);
        assert_eq!(k("flushall async"), Kind::Flush);
        assert_eq!(k("SWAPDB 0 1"), Kind::Flush);
        assert_eq!(k("SORT l STORE d"), Kind::WriteUnknown);
        assert_eq!(k("PING"), Kind::Neutral);
    }

    fn written(line: &str) -> Vec<String> {
        let frame = format!("{line}\r\n");
        let cmd = Command::parse(frame.as_bytes()).unwrap();
        let mut keys = Vec::new();
        for_each_written(&cmd, |k| keys.push(String::from_utf8_lossy(k).into_owned()));
        keys
    }

    #[test]
    fn written_keys_and_expiry() {
        assert_eq!(written("MSET a 1 b 2"), ["a", "b"]);
        assert_eq!(written("msetnx a 1 b 2 c 3"), ["a", "b", "c"]);
        assert_eq!(written("RENAME a b"), ["a", "b"]);
        assert_eq!(written("COPY a b DB 0 REPLACE"), ["b"]);
        assert_eq!(written("DEL a b c"), ["a", "b", "c"]);
        assert_eq!(written("EVAL s 2 a b x"), ["a", "b"]);
        assert_eq!(written("EVALSHA s 0 x"), Vec::<String>::new());
        assert_eq!(written("FCALL f 1 a x"), ["a"]);
        assert_eq!(written("SET a 1"), ["a"]);
        assert_eq!(written("BITOP AND d a b"), ["d", "a", "b"]);
        let set = Command::parse(b"SET a 1 NX px 5\r\n").unwrap();
        assert!(set_has_expiry(&set));
        assert!(!set_has_expiry(&Command::parse(b"SET a EX\r\n").unwrap()));
    }

    /// Every listed write names its key through nexus-resp's key table (a
    /// command missing there would write without invalidating anything).
    #[test]
    fn every_listed_write_has_its_keys() {
        for name in WRITE_KEY1 {
            let line = format!("{} k a b", String::from_utf8_lossy(name));
            assert_eq!(
                written(&line).first().map(String::as_str),
                Some("k"),
                "{line}"
            );
        }
        for name in WRITE_KEYS {
            let name = String::from_utf8_lossy(name);
            // numkeys-style commands: `LMPOP 1 k ...`; others take keys first.
            let line = match &*name {
                "LMPOP" | "ZMPOP" => format!("{name} 1 k LEFT"),
                "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => format!("{name} k 1 a"),
                "BITOP" => format!("{name} AND k a"),
                "COPY" => format!("{name} a k"),
                _ => format!("{name} k a"),
            };
            assert!(written(&line).contains(&"k".to_owned()), "{line}");
        }
    }
}
