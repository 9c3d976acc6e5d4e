//! Key positions of common commands (see [`Command::keys`]).

use crate::Command;

/// Where the keys of a command are: up to two runs of argument positions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeySpec {
    /// `(start, end_exclusive, step)` runs, already resolved against the
    /// command's argument count.
    runs: [(usize, usize, usize); 2],
}

impl KeySpec {
    fn run(start: usize, end: usize, step: usize) -> Self {
        KeySpec {
            runs: [(start, end, step), (0, 0, 1)],
        }
    }
}

/// Longest command name in the table (`GEORADIUSBYMEMBER_RO` has 20 bytes).
const MAX_NAME: usize = 24;

/// Resolves the key positions of `cmd`.
pub(crate) fn spec(cmd: &Command<'_>) -> KeySpec {
    let name = cmd.name();
    let mut upper = [0u8; MAX_NAME];
    let Some(upper) = upper.get_mut(..name.len()) else {
        return KeySpec::default();
    };
    for (u, n) in upper.iter_mut().zip(name) {
        *u = n.to_ascii_uppercase();
    }
    let argc = cmd.len();
    let all = |first: usize, back: usize, step: usize| {
        KeySpec::run(first, argc.saturating_sub(back), step)
    };
    let numkeys = |at: usize| -> KeySpec {
        let n = cmd
            .arg(at)
            .and_then(|a| crate::lines::integer(a).ok())
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        let start = at + 1;
        KeySpec::run(start, start.saturating_add(n).min(argc), 1)
    };
    match &*upper {
        b"MGET" | b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" | b"WATCH" | b"SINTER" | b"SUNION"
        | b"SDIFF" | b"SINTERSTORE" | b"SUNIONSTORE" | b"SDIFFSTORE" | b"PFCOUNT" | b"PFMERGE" => {
            all(1, 0, 1)
        }
        b"MSET" | b"MSETNX" => all(1, 0, 2),
        b"RENAME" | b"RENAMENX" | b"COPY" | b"SMOVE" | b"RPOPLPUSH" | b"LMOVE" | b"BRPOPLPUSH"
        | b"BLMOVE" | b"GEOSEARCHSTORE" | b"ZRANGESTORE" => KeySpec::run(1, argc.min(3), 1),
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => all(1, 1, 1),
        b"OBJECT" | b"MEMORY" => KeySpec::run(2, argc.min(3), 1),
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => numkeys(2),
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => {
            let mut spec = numkeys(2);
            spec.runs[1] = spec.runs[0];
            spec.runs[0] = (1, argc.min(2), 1);
            spec
        }
        b"ZUNION" | b"ZINTER" | b"ZDIFF" | b"ZINTERCARD" | b"SINTERCARD" | b"LMPOP" | b"ZMPOP" => {
            numkeys(1)
        }
        b"BLMPOP" | b"BZMPOP" => numkeys(2),
        b"XREAD" | b"XREADGROUP" => {
            // One walk (`arg(i)` in a loop would be quadratic).
            let streams = cmd
                .args()
                .position(|a| a.eq_ignore_ascii_case(b"STREAMS"))
                .map(|p| p + 1);
            match streams {
                Some(s) => {
                    let n = (argc - s - 1) / 2;
                    KeySpec::run(s + 1, s + 1 + n, 1)
                }
                None => KeySpec::default(),
            }
        }
        name if is_single_key(name) => KeySpec::run(1, argc.min(2), 1),
        _ => KeySpec::default(),
    }
}

fn is_single_key(name: &[u8]) -> bool {
    matches!(
        name,
        // Strings and bitmaps.
        b"GET" | b"SET" | b"SETNX" | b"SETEX" | b"PSETEX" | b"GETSET" | b"GETDEL" | b"GETEX"
            | b"APPEND" | b"STRLEN" | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" | b"INCRBYFLOAT"
            | b"GETRANGE" | b"SETRANGE" | b"SUBSTR" | b"GETBIT" | b"SETBIT" | b"BITCOUNT"
            | b"BITPOS" | b"BITFIELD" | b"BITFIELD_RO"
            // Keyspace and expiry.
            | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" | b"EXPIRETIME"
            | b"PEXPIRETIME" | b"TTL" | b"PTTL" | b"PERSIST" | b"TYPE" | b"DUMP" | b"RESTORE"
            | b"SORT" | b"SORT_RO"
            // Hashes.
            | b"HGET" | b"HSET" | b"HSETNX" | b"HMSET" | b"HMGET" | b"HDEL" | b"HLEN"
            | b"HEXISTS" | b"HGETALL" | b"HKEYS" | b"HVALS" | b"HINCRBY" | b"HINCRBYFLOAT"
            | b"HSTRLEN" | b"HSCAN" | b"HRANDFIELD" | b"HEXPIRE" | b"HPEXPIRE" | b"HTTL"
            | b"HPTTL" | b"HPERSIST" | b"HGETDEL" | b"HGETEX" | b"HSETEX"
            // Lists.
            | b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LLEN"
            | b"LRANGE" | b"LINDEX" | b"LSET" | b"LREM" | b"LTRIM" | b"LINSERT" | b"LPOS"
            // Sets.
            | b"SADD" | b"SREM" | b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD"
            | b"SPOP" | b"SRANDMEMBER" | b"SSCAN"
            // Sorted sets.
            | b"ZADD" | b"ZREM" | b"ZRANGE" | b"ZRANGEBYSCORE" | b"ZREVRANGE"
            | b"ZREVRANGEBYSCORE" | b"ZRANGEBYLEX" | b"ZREVRANGEBYLEX" | b"ZRANK" | b"ZREVRANK"
            | b"ZSCORE" | b"ZMSCORE" | b"ZCARD" | b"ZCOUNT" | b"ZLEXCOUNT" | b"ZINCRBY"
            | b"ZSCAN" | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYLEX"
            | b"ZPOPMIN" | b"ZPOPMAX" | b"ZRANDMEMBER"
            // Streams.
            | b"XADD" | b"XLEN" | b"XRANGE" | b"XREVRANGE" | b"XDEL" | b"XTRIM" | b"XACK"
            | b"XCLAIM" | b"XAUTOCLAIM" | b"XPENDING" | b"XSETID" | b"XGROUP"
            // Geo and HyperLogLog.
            | b"GEOADD" | b"GEOPOS" | b"GEODIST" | b"GEOHASH" | b"GEOSEARCH" | b"GEORADIUS"
            | b"GEORADIUS_RO" | b"GEORADIUSBYMEMBER" | b"GEORADIUSBYMEMBER_RO" | b"PFADD"
    )
}

/// Iterator over the key arguments of a command.
pub(crate) struct KeysIter<'c, 'a> {
    cmd: &'c Command<'a>,
    spec: KeySpec,
    run: usize,
    next: usize,
    cursor: (usize, usize),
}

impl<'c, 'a> KeysIter<'c, 'a> {
    pub(crate) fn new(cmd: &'c Command<'a>, spec: KeySpec) -> Self {
        KeysIter {
            cmd,
            spec,
            run: 0,
            next: spec.runs[0].0,
            cursor: (0, 0),
        }
    }
}

impl<'a> Iterator for KeysIter<'_, 'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let &(_, end, step) = self.spec.runs.get(self.run)?;
            if self.next < end {
                let i = self.next;
                self.next += step;
                return self.cmd.arg_seq(i, &mut self.cursor);
            }
            self.run += 1;
            self.next = self.spec.runs.get(self.run)?.0;
        }
    }
}
