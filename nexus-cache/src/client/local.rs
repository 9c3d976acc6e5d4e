//! Commands the proxy answers itself on unpinned connections: authentication,
//! `HELLO`, `QUIT`, `RESET`, `CLIENT SETINFO`, refusals and `NEXUS.*`.
//!
//! Error texts are Redis's own, so a client sees the same bytes it would see
//! talking to Redis directly.

use bytes::{Bytes, BytesMut};
use subtle::ConstantTimeEq;

use super::Shared;
use crate::config::Credentials;
use crate::error::single_line;
use crate::resp::{Command, encode};
use crate::route::Local;

pub(crate) const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const AUTH_NOPASS: &[u8] = b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n";
const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";

/// What a locally handled command turns into.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Answer this and carry on.
    Reply(Bytes),
    /// A near-cache hit: answer this (with the hits next to it, in one slot).
    Hit(Bytes),
    /// Answer `+OK`, flush, close.
    Quit,
    /// Forward this (rewritten) command over the pool.
    Forward(Bytes),
    /// Pin, starting with this (rewritten) command.
    Pin(Bytes),
    /// Share the upstream call of identical concurrent reads (the frame is
    /// the command itself), under these flight generations.
    Flight { stripe: u64, global: u64 },
    /// Run this write as one script (tagged write, fill, lease-cancelling
    /// deletion); the reader waits for it before reading the client's next
    /// command. The marks are its near-cache side, acknowledged with its
    /// reply.
    Script(crate::live::Call, crate::near::WriteMarks),
    /// A `GET` of a key with a stampede guard: its own reply slot.
    Guarded(crate::live::Guarded),
    /// Fetch this `GET` (the frame is the command) and offer the reply to
    /// the near cache.
    NearFill(crate::near::Fill),
    /// An admin command that calls Redis (`NEXUS.TAG`, `NEXUS.INVALIDATE`).
    Admin(Admin),
}

/// `NEXUS.*` commands that need Redis.
#[derive(Debug)]
pub(crate) enum Admin {
    /// `NEXUS.TAG tag key [key ...]`: keys `tag set, key...`.
    Tag(Vec<Bytes>),
    /// `NEXUS.INVALIDATE tag`: the tag set.
    Invalidate(Bytes),
}

fn reply(b: &'static [u8]) -> Outcome {
    Outcome::Reply(Bytes::from_static(b))
}

pub(crate) fn handle(
    local: Local,
    cmd: &Command<'_>,
    authed: &mut bool,
    shared: &Shared,
) -> Outcome {
    match local {
        Local::Quit => Outcome::Quit,
        Local::Auth => auth(cmd, authed, shared.client_auth.as_ref()),
        Local::Hello => hello(cmd, authed, shared.client_auth.as_ref()),
        Local::Reset => {
            *authed = shared.client_auth.is_none();
            reply(b"+RESET\r\n")
        }
        Local::ClientSetInfo => reply(b"+OK\r\n"),
        Local::Nexus => nexus(cmd, shared),
    }
}

/// The reply to a refused command.
pub(crate) fn refused(cmd: &Command<'_>) -> Bytes {
    let name = single_line(&String::from_utf8_lossy(cmd.name()).to_ascii_uppercase());
    Bytes::from(format!(
        "-ERR nexus: '{name}' cannot be used through the proxy\r\n"
    ))
}

fn auth(cmd: &Command<'_>, authed: &mut bool, expected: Option<&Credentials>) -> Outcome {
    let (user, pass) = match cmd.len() {
        2 => (None, cmd.arg(1).unwrap_or_default()),
        3 => (cmd.arg(1), cmd.arg(2).unwrap_or_default()),
        _ => return reply(b"-ERR wrong number of arguments for 'auth' command\r\n"),
    };
    match expected {
        None if user.is_none() => reply(AUTH_NOPASS),
        // The `default` user of a Redis without a password accepts any password.
        None if user.is_some_and(|u| u == b"default") => reply(b"+OK\r\n"),
        None => reply(WRONGPASS),
        Some(c) if matches(c, user, pass) => {
            *authed = true;
            reply(b"+OK\r\n")
        }
        Some(_) => reply(WRONGPASS),
    }
}

fn matches(c: &Credentials, user: Option<&[u8]>, pass: &[u8]) -> bool {
    let want_user = c.username.as_deref().unwrap_or("default").as_bytes();
    let user_ok = user.unwrap_or(b"default") == want_user;
    let pass_ok: bool = c.password.as_bytes().ct_eq(pass).into();
    user_ok & pass_ok
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: the AUTH part is checked
/// here (the upstream connection is already authenticated) and stripped; the rest
/// goes to Redis so the reply is Redis's own. RESP3 or a name pins.
fn hello(cmd: &Command<'_>, authed: &mut bool, expected: Option<&Credentials>) -> Outcome {
    let mut version = None;
    if let Some(v) = cmd.arg(1) {
        match std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
        {
            Some(2) => version = Some(&b"2"[..]),
            Some(3) => version = Some(&b"3"[..]),
            Some(_) => return reply(b"-NOPROTO unsupported protocol version\r\n"),
            None => return reply(b"-ERR Protocol version is not an integer or out of range\r\n"),
        }
    }
    let (mut credentials, mut setname) = (None, None);
    // `i`: the index of `opt`. One walk over the options (`arg(i)` in a
    // loop would be quadratic on a long command, and HELLO is answered
    // before authentication).
    let mut i = 2;
    let mut opts = cmd.args().skip(1);
    while let Some(opt) = opts.next() {
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.len() {
            let user = opts.next().unwrap_or_default();
            let pass = opts.next().unwrap_or_default();
            credentials = Some((user, pass));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.len() {
            setname = opts.next();
            i += 2;
        } else {
            let opt = single_line(&String::from_utf8_lossy(opt));
            return Outcome::Reply(Bytes::from(format!(
                "-ERR Syntax error in HELLO option '{opt}'\r\n"
            )));
        }
    }
    match (credentials, expected) {
        (Some((u, p)), Some(c)) if matches(c, Some(u), p) => *authed = true,
        (Some((u, _)), None) if u == b"default" => {}
        (Some(_), _) => return reply(WRONGPASS),
        (None, _) if !*authed => return reply(HELLO_NOAUTH),
        (None, _) => {}
    }
    let mut args: Vec<&[u8]> = vec![b"HELLO"];
    args.extend(version);
    if let Some(name) = setname {
        args.extend([&b"SETNAME"[..], name]);
    }
    let mut out = BytesMut::new();
    encode::command(&mut out, &args);
    if version == Some(b"3") || setname.is_some() {
        Outcome::Pin(out.freeze())
    } else {
        Outcome::Forward(out.freeze())
    }
}

const NEXUS_HELP: &str = "NEXUS.STATS, NEXUS.POLICY, NEXUS.HOTKEYS [N], NEXUS.TAG tag key [key ...], NEXUS.INVALIDATE tag";

fn nexus(cmd: &Command<'_>, shared: &Shared) -> Outcome {
    let live = shared.live.as_deref();
    let name = cmd.name();
    if name.eq_ignore_ascii_case(b"NEXUS.STATS") {
        return Outcome::Reply(stats(shared));
    }
    if name.eq_ignore_ascii_case(b"NEXUS.POLICY") {
        let lines = live.map(|l| l.policy.load().describe()).unwrap_or_default();
        let mut out = BytesMut::new();
        encode::header(&mut out, b'*', lines.len() as u64);
        for l in &lines {
            encode::bulk(&mut out, l.as_bytes());
        }
        return Outcome::Reply(out.freeze());
    }
    if name.eq_ignore_ascii_case(b"NEXUS.HOTKEYS") {
        return hotkeys(cmd, live);
    }
    let is_tag = name.eq_ignore_ascii_case(b"NEXUS.TAG");
    let is_invalidate = name.eq_ignore_ascii_case(b"NEXUS.INVALIDATE");
    if is_tag || is_invalidate {
        let lower = single_line(&String::from_utf8_lossy(name).to_ascii_lowercase());
        if live.is_none() {
            return Outcome::Reply(Bytes::from(format!(
                "-ERR nexus: '{lower}' needs a cache policy (start the proxy with one)\r\n"
            )));
        }
        let arity_ok = if is_tag {
            cmd.len() >= 3
        } else {
            cmd.len() == 2
        };
        if !arity_ok {
            return Outcome::Reply(Bytes::from(format!(
                "-ERR wrong number of arguments for '{lower}' command\r\n"
            )));
        }
        let set = crate::live::tag_set(cmd.arg(1).unwrap_or_default());
        return Outcome::Admin(if is_tag {
            let mut keys = vec![set];
            keys.extend(cmd.args().skip(1).map(Bytes::copy_from_slice));
            Admin::Tag(keys)
        } else {
            Admin::Invalidate(set)
        });
    }
    let name = single_line(&String::from_utf8_lossy(name));
    Outcome::Reply(Bytes::from(format!(
        "-ERR nexus: unknown admin command '{name}' (available: {NEXUS_HELP})\r\n"
    )))
}

/// `NEXUS.STATS`: the proxy counters, then the mechanism counters.
fn stats(shared: &Shared) -> Bytes {
    let proxy = shared.metrics.snapshot();
    let mech = shared
        .live
        .as_deref()
        .map(|l| l.metrics.snapshot())
        .unwrap_or_default();
    let entries = proxy.entries();
    let fields = mech.fields();
    let mut out = BytesMut::new();
    encode::header(&mut out, b'*', 2 * (entries.len() + fields.len()) as u64);
    for (name, value) in entries.iter().chain(fields.iter()) {
        encode::bulk(&mut out, name.as_bytes());
        encode::integer(&mut out, b':', i64::try_from(*value).unwrap_or(i64::MAX));
    }
    out.freeze()
}

/// `NEXUS.HOTKEYS [N]` (default 10, at most 1,000): `[key, rate]` pairs,
/// hottest first; the rate is the estimated reads per second.
fn hotkeys(cmd: &Command<'_>, live: Option<&crate::live::Live>) -> Outcome {
    let n = match cmd.arg(1) {
        None => 10,
        Some(a) => match std::str::from_utf8(a)
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        {
            Some(n) if cmd.len() == 2 => n.min(1000),
            _ => return reply(b"-ERR nexus: usage: NEXUS.HOTKEYS [N]\r\n"),
        },
    };
    let top = live.map(|l| l.hot.top(n)).unwrap_or_default();
    let mut out = BytesMut::new();
    encode::header(&mut out, b'*', top.len() as u64);
    for (key, rate) in &top {
        encode::header(&mut out, b'*', 2);
        encode::bulk(&mut out, key);
        encode::bulk(&mut out, format!("{rate:.1}").as_bytes());
    }
    Outcome::Reply(out.freeze())
}

/// Runs an [`Admin`] command on the client's lane.
pub(crate) async fn admin(
    call: Admin,
    live: &crate::live::Live,
    lane: &crate::upstream::Lane,
) -> Bytes {
    use crate::live::{INVALIDATE_SCRIPT, TAG_SCRIPT, scripts};
    use std::sync::atomic::Ordering::Relaxed;
    match call {
        Admin::Tag(keys) => {
            let keys: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
            TAG_SCRIPT.call(lane, &keys, &[]).await
        }
        Admin::Invalidate(set) => {
            // Before the script runs: no read sent after this command joins a
            // flight that started before it, or fills the near cache with a
            // value the script deletes.
            live.tag_invalidated();
            let mut near = crate::near::WriteMarks::default();
            live.near_write_all(&mut near);
            let reply = INVALIDATE_SCRIPT.call(lane, &[&set], &[]).await;
            live.near_acknowledge(near);
            if let Some(n) = scripts::integer(&reply) {
                live.metrics.invalidations.fetch_add(1, Relaxed);
                live.metrics
                    .invalidated_keys
                    .fetch_add(n.unsigned_abs(), Relaxed);
            }
            reply
        }
    }
}
