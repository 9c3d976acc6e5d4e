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
    /// Answer `+OK`, flush, close.
    Quit,
    /// Forward this (rewritten) command over the pool.
    Forward(Bytes),
    /// Pin, starting with this (rewritten) command.
    Pin(Bytes),
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
    let mut i = 2;
    while let Some(opt) = cmd.arg(i) {
        if opt.eq_ignore_ascii_case(b"AUTH") && i + 2 < cmd.len() {
            credentials = Some((
                cmd.arg(i + 1).unwrap_or_default(),
                cmd.arg(i + 2).unwrap_or_default(),
            ));
            i += 3;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") && i + 1 < cmd.len() {
            setname = cmd.arg(i + 1);
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

fn nexus(cmd: &Command<'_>, shared: &Shared) -> Outcome {
    if cmd.is(b"NEXUS.STATS") {
        return Outcome::Reply(shared.metrics.snapshot().to_resp());
    }
    let name = single_line(&String::from_utf8_lossy(cmd.name()));
    Outcome::Reply(Bytes::from(format!(
        "-ERR nexus: unknown admin command '{name}' (available: NEXUS.STATS)\r\n"
    )))
}
