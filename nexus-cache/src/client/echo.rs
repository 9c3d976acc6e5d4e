//! Proxy answers on pinned connections, delivered by Redis.
//!
//! On a pinned connection every byte Redis sends streams back to the client
//! unparsed (replies, pub/sub messages, RESP3 pushes), so the proxy cannot
//! slip a reply of its own in between without counting Redis's replies. It
//! does not need to: it replaces the `NEXUS.*` command with an `EVAL` of a
//! fixed script that returns the proxy's RESP2 reply (passed as `ARGV[1]`)
//! as Redis values. Redis answers it in order, like any other command, and in
//! the protocol the connection speaks (RESP2 or RESP3).
//!
//! The reply is computed when the command is read. Inside `MULTI` the `EVAL`
//! is queued (`+QUEUED`, the answer comes with `EXEC`), as any command would
//! be; in RESP2 subscribe mode Redis refuses it with its own error.

use bytes::BytesMut;

use crate::resp::encode;

/// Rebuilds a RESP2 reply (simple string, error, integer, bulk string or
/// nil, arrays of those) as Lua values, which Redis converts back.
const SCRIPT: &str = r"local s, p = ARGV[1], 1
local function line()
  local e = string.find(s, '\r\n', p, true)
  local t, l = string.sub(s, p, p), string.sub(s, p + 1, e - 1)
  p = e + 2
  return t, l
end
local function value()
  local t, l = line()
  if t == '+' then return {ok = l} end
  if t == '-' then return {err = l} end
  if t == ':' then return tonumber(l) end
  if t == '$' then
    local n = tonumber(l)
    if n < 0 then return false end
    local v = string.sub(s, p, p + n - 1)
    p = p + n + 2
    return v
  end
  local a = {}
  for i = 1, tonumber(l) do a[i] = value() end
  return a
end
return value()";

/// The command that makes Redis answer `reply` (a complete RESP2 reply).
pub(super) fn command(reply: &[u8]) -> BytesMut {
    let mut out = BytesMut::with_capacity(SCRIPT.len() + reply.len() + 64);
    encode::command(&mut out, &[b"EVAL", SCRIPT.as_bytes(), b"0", reply]);
    out
}
