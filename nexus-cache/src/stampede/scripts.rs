//! The Lua scripts of the stampede guard. Each runs atomically in Redis, so
//! a lease is checked and used in one step: no other client (or proxy) can
//! act between the check and the write.

/// Prefix of lease keys: the lease of key `k` is `nexus:lease:k`.
macro_rules! lease_prefix {
    () => {
        "nexus:lease:"
    };
}
pub(crate) use lease_prefix;

/// Prefix of the set of a key's unfilled lease tokens granted since the
/// key was last invalidated through a proxy: `nexus:fresh:k`. A sorted set
/// scored by grant time (Redis's clock, ms): every grant first drops the
/// tokens older than the set's lifetime (`3 × lock_ttl`, longer than a
/// proxy sends a holder's fill under its token), so the set holds the
/// tokens of at most about 4 unfilled leases (leases are exclusive and
/// live `lock_ttl`) however long a key stays missing and unfilled, and it
/// expires `3 × lock_ttl` after the last grant.
macro_rules! fresh_prefix {
    () => {
        "nexus:fresh:"
    };
}
pub(crate) use fresh_prefix;

/// Lua defining `grant(lease, fresh)`, shared by [`ACQUIRE`] and [`GRANT`]:
/// takes the lease with `ARGV[1]` (token) for `ARGV[2]` ms if it is free,
/// and then records the token in the fresh set, first dropping tokens older
/// than `ARGV[3]` ms (the set's lifetime, renewed). `1` if taken, `0` if held.
macro_rules! grant_lua {
    () => {
        r"
local function grant(lease, fresh)
  if redis.call('SET', lease, ARGV[1], 'NX', 'PX', ARGV[2]) then
    local t = redis.call('TIME')
    local now = t[1] * 1000 + math.floor(t[2] / 1000)
    redis.call('ZREMRANGEBYSCORE', fresh, '-inf', '(' .. tostring(now - ARGV[3]))
    redis.call('ZADD', fresh, tostring(now), ARGV[1])
    redis.call('PEXPIRE', fresh, ARGV[3])
    return 1
  end
  return 0
end
"
    };
}

/// `KEYS[1]` the key, `KEYS[2]` its lease, `KEYS[3]` its fresh set;
/// `ARGV[1]` a new token, `ARGV[2]` the lease lifetime in ms, `ARGV[3]` the
/// fresh set's lifetime in ms. The key's value when it exists, or the
/// `GET`'s own error wrapped in a one-element array (`*1`, so that it is
/// told apart from an error of the script itself: out of memory for the
/// lease's `SET`, `READONLY`, `BUSY`, ...); otherwise takes the lease if it
/// is free (`:1`, and the token joins the fresh set) or reports it held
/// (`:0`).
pub(crate) const ACQUIRE: &str = concat!(
    grant_lua!(),
    r"
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' and v.err then return {v} end
if v then return v end
return grant(KEYS[2], KEYS[3])
"
);

/// An early refresh's lease: `KEYS[1]` the lease, `KEYS[2]` the fresh set;
/// `ARGV` as for [`ACQUIRE`]. `:1` if taken, `:0` if held.
pub(crate) const GRANT: &str = concat!(grant_lua!(), "return grant(KEYS[1], KEYS[2])\n");

/// A filler's write. `KEYS[1]` the key, `KEYS[2]` its lease, `KEYS[3]` its
/// fresh set, `KEYS[4..]` tag sets; `ARGV[1]` the filler's token, `ARGV[2..]`
/// the write command.
///
/// While the lease holds the token, the write runs and the lease is
/// released. When it does not (the lease expired, maybe taken by the next
/// filler) but the token is still in the fresh set, no write went through
/// a proxy since the lease was granted: the write runs as an ordinary write
/// (the next filler's lease, if any, is left alone). Otherwise a write,
/// deletion, tag invalidation or flush ran since: the fill may carry a
/// value older than that write, so it is not written and the script
/// answers [`FILL_DROPPED`] (a nil in a one-element array, told apart
/// from the write's own nil, e.g. `SET ... NX` that did not write); the
/// client is answered a plain nil (what `SET ... NX` answers when it does
/// not write).
pub(crate) const FILL: &str = r"
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
elseif not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  return {false}
end
redis.call('ZREM', KEYS[3], ARGV[1])
local reply = redis.pcall(unpack(ARGV, 2))
if type(reply) == 'table' and reply.err then return reply end
if reply then
  for i = 4, #KEYS do redis.call('SADD', KEYS[i], KEYS[1]) end
end
return reply
";

/// [`FILL`]'s answer when it dropped the fill.
pub(crate) const FILL_DROPPED: &[u8] = b"*1\r\n$-1\r\n";

/// `KEYS[1]` a lease, `KEYS[2]` its fresh set, `ARGV[1]` a token: deletes
/// the lease if it still holds the token (a lease nobody was left to use).
pub(crate) const RELEASE: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// `NEXUS.INVALIDATE`: as [`crate::tags::script::INVALIDATE`] (deletes every
/// member key of the tag set `KEYS[1]` and the set, returns how many members
/// existed), and also deletes each member's lease and fresh set, so an
/// outstanding fill of an invalidated key is not written.
pub(crate) const INVALIDATE_TAG: &str = concat!(
    r"
local members = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for i = 1, #members, 1000 do
  local last = math.min(i + 999, #members)
  deleted = deleted + redis.call('DEL', unpack(members, i, last))
  local leases = {}
  for j = i, last do
    leases[#leases + 1] = '",
    lease_prefix!(),
    r"' .. members[j]
    leases[#leases + 1] = '",
    fresh_prefix!(),
    r"' .. members[j]
  end
  redis.call('DEL', unpack(leases))
end
redis.call('DEL', KEYS[1])
return deleted
"
);
