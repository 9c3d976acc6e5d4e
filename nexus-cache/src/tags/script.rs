//! The Lua scripts behind tag invalidation, and their calling conventions.
//!
//! Each is sent once with `SCRIPT LOAD` and then called with
//! `EVALSHA <sha> <numkeys> KEYS... ARGV...`.

/// `KEYS[1]` the tag set, `KEYS[2..]` keys to add. Returns how many keys were
/// not yet in the set.
pub const TAG: &str = r"
local added = 0
for i = 2, #KEYS, 1000 do
  added = added + redis.call('SADD', KEYS[1], unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
return added
";

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
/// key), adds the key to every tag set. Returns the command's own reply.
pub const WRITE_AND_TAG: &str = r"
local reply = redis.pcall(unpack(ARGV))
if type(reply) == 'table' and reply.err then return reply end
if reply then
  for i = 2, #KEYS do redis.call('SADD', KEYS[i], KEYS[1]) end
end
return reply
";
