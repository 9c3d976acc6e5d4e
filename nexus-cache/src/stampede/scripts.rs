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

/// `KEYS[1]` the key, `KEYS[2]` its lease; `ARGV[1]` a fresh token,
/// `ARGV[2]` the lease lifetime in ms. The key's value (or Redis's error
/// reply for `GET`) when it exists; otherwise takes the lease if it is free
/// (`:1`) or reports it held (`:0`).
pub(crate) const ACQUIRE: &str = r"
local v = redis.pcall('GET', KEYS[1])
if v then return v end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
";

/// A filler's write. `KEYS[1]` the key, `KEYS[2]` its lease, `KEYS[3..]` tag
/// sets; `ARGV[1]` the filler's token, `ARGV[2..]` the write command. Runs
/// the command only while the lease still holds the token (it was not
/// cancelled by an invalidation, nor expired and taken by another filler),
/// then releases the lease and tags the key. A fill that lost its lease is
/// not written and answered nil (what `SET ... NX` answers when it does not
/// write), so a late fill can never put back a value an invalidation removed.
pub(crate) const FILL: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[2])
local reply = redis.pcall(unpack(ARGV, 2))
if type(reply) == 'table' and reply.err then return reply end
if reply then
  for i = 3, #KEYS do redis.call('SADD', KEYS[i], KEYS[1]) end
end
return reply
";

/// `KEYS[1]` a lease, `ARGV[1]` a token: deletes the lease if it still
/// holds the token (a lease nobody was left to use).
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// `NEXUS.INVALIDATE`: as [`crate::tags::script::INVALIDATE`] (deletes every
/// member key of the tag set `KEYS[1]` and the set, returns how many members
/// existed), and also deletes each member's lease, so an outstanding fill of
/// an invalidated key is not written.
pub(crate) const INVALIDATE_TAG: &str = concat!(
    r"
local members = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for i = 1, #members, 1000 do
  local last = math.min(i + 999, #members)
  deleted = deleted + redis.call('DEL', unpack(members, i, last))
  local leases = {}
  for j = i, last do leases[#leases + 1] = '",
    lease_prefix!(),
    r"' .. members[j] end
  redis.call('DEL', unpack(leases))
end
redis.call('DEL', KEYS[1])
return deleted
"
);
