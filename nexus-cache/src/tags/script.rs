//! The Lua scripts behind tag invalidation, and their calling conventions.
//!
//! Each is sent once with `SCRIPT LOAD` and then called with
//! `EVALSHA <sha> <numkeys> KEYS... ARGV...`.

/// Lua defining `tag_into(set, keys)`: adds `keys` to the tag set `set`
/// and keeps the set bounded. Returns how many keys were not yet members.
///
/// Dead members are swept as tags are written: before adding, three
/// random members are sampled and those whose key no longer exists
/// (expired, or deleted outside a tag invalidation) are removed, the way
/// Redis samples keys for active expiry. A tagging of one key adds at most
/// one member and removes up to three dead ones, so a tag written to
/// continuously holds its live keys plus a bounded share of dead ones
/// (at most about a third of the set once it has settled) instead of
/// every key it ever held. Tag sets get no TTL of their own: a member's
/// TTL can grow after it is tagged (hot-key extension, `EXPIRE`), and a
/// set that expired before its keys would let an invalidation miss them.
///
/// A missing member whose fill lease is out (the stampede guard's
/// `nexus:lease:<key>`) is kept, so invalidating the tag still cancels that
/// fill. The member keys it checks are not declared in `KEYS` (as in
/// [`INVALIDATE`]): fine on a single node and, with the hash-tag layouts of
/// the module docs, on a cluster.
macro_rules! tag_into_lua {
    () => {
        concat!(
            r"
local function tag_into(set, keys)
  for _, m in ipairs(redis.call('SRANDMEMBER', set, 3)) do
    if redis.call('EXISTS', m, '",
            crate::stampede::scripts::lease_prefix!(),
            r"' .. m) == 0 then redis.call('SREM', set, m) end
  end
  local added = 0
  for i = 1, #keys, 1000 do
    added = added + redis.call('SADD', set, unpack(keys, i, math.min(i + 999, #keys)))
  end
  return added
end
"
        )
    };
}
pub(crate) use tag_into_lua;

/// `KEYS[1]` the tag set, `KEYS[2..]` keys to add. Returns how many keys were
/// not yet in the set. Also sweeps up to three dead members (keys that no
/// longer exist), so tag sets stay bounded without invalidations.
pub const TAG: &str = concat!(
    tag_into_lua!(),
    r"
local keys = {}
for i = 2, #KEYS do keys[#keys + 1] = KEYS[i] end
return tag_into(KEYS[1], keys)
"
);

/// `KEYS[1]` the tag set. Deletes every member key and the set; returns how
/// many member keys existed.
pub const INVALIDATE: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
local deleted = 0
for i = 1, #members, 1000 do
  deleted = deleted + redis.call('DEL', unpack(members, i, math.min(i + 999, #members)))
end
redis.call('DEL', KEYS[1])
return deleted
";

/// `KEYS[1]` the written key, `KEYS[2..]` tag sets; `ARGV` the whole write
/// command (`SET`, `KEYS[1]`, value, options...). Runs the command; unless it
/// failed or wrote nothing (a nil reply, e.g. `SET ... NX` on an existing
/// key), adds the key to every tag set (sweeping dead members, see
/// [`TAG`]). Returns the command's own reply.
pub const WRITE_AND_TAG: &str = concat!(
    tag_into_lua!(),
    r"
local reply = redis.pcall(unpack(ARGV))
if type(reply) == 'table' and reply.err then return reply end
if reply then
  for i = 2, #KEYS do tag_into(KEYS[i], {KEYS[1]}) end
end
return reply
"
);
