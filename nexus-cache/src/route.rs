//! Command classification: what the proxy does with each client command.
//!
//! This is the single decision point later layers hook into (policy lookup,
//! near cache, singleflight, stampede guard answer some reads here instead of
//! forwarding them).

use crate::resp::Command;

/// What to do with one command on an unpinned connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Stateless: multiplex over the shared pool, bytes unchanged.
    Forward,
    /// Needs a dedicated upstream connection from here on.
    Pin,
    /// Answered by the proxy: `AUTH`, `HELLO` (auth part), `QUIT`, `RESET`,
    /// `CLIENT SETINFO`, `NEXUS.*`.
    Local(Local),
    /// Refused with an error naming the command.
    Refuse,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    Auth,
    Hello,
    Quit,
    Reset,
    ClientSetInfo,
    Nexus,
}

/// Commands that block the connection they run on.
const BLOCKING: &[&[u8]] = &[
    b"BLPOP",
    b"BRPOP",
    b"BLMOVE",
    b"BRPOPLPUSH",
    b"BZPOPMIN",
    b"BZPOPMAX",
    b"BLMPOP",
    b"BZMPOP",
    b"WAIT",
    b"WAITAOF",
];

/// Commands that put state on the connection.
const STATEFUL: &[&[u8]] = &[
    b"MULTI",
    b"WATCH",
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"MONITOR",
];

/// `CLIENT` subcommands that put state on the connection. `ID` is included because
/// the id is used to address this connection later (`CLIENT TRACKING ... REDIRECT id`,
/// `CLIENT UNBLOCK id`), which only works if it names a connection of this client.
const CLIENT_STATEFUL: &[&[u8]] = &[
    b"ID",
    b"TRACKING",
    b"REPLY",
    b"SETNAME",
    b"NO-EVICT",
    b"NO-TOUCH",
    b"CACHING",
];

/// Commands that cannot be proxied meaningfully (see docs/cache-proxy.md).
pub(crate) const REFUSED: &[&[u8]] = &[b"SYNC", b"PSYNC", b"REPLCONF", b"SHUTDOWN"];

/// Classifies `cmd`; `pool_db` is the database the shared connections use.
pub(crate) fn classify(cmd: &Command<'_>, pool_db: u32) -> Route {
    let name = cmd.name();
    // No command the lists below name has fewer than 4 bytes: `GET`,
    // `SET`, `DEL`, `TTL` are forwarded without comparing them to each.
    if name.len() < 4 {
        return Route::Forward;
    }
    let any = |list: &[&[u8]]| list.iter().any(|n| name.eq_ignore_ascii_case(n));
    if name.len() > 6 && name[..6].eq_ignore_ascii_case(b"NEXUS.") {
        return Route::Local(Local::Nexus);
    }
    if any(STATEFUL) || any(BLOCKING) {
        return Route::Pin;
    }
    if any(REFUSED) {
        return Route::Refuse;
    }
    match name.len() {
        4 if cmd.is(b"AUTH") => Route::Local(Local::Auth),
        4 if cmd.is(b"QUIT") => Route::Local(Local::Quit),
        5 if cmd.is(b"HELLO") => Route::Local(Local::Hello),
        5 if cmd.is(b"RESET") => Route::Local(Local::Reset),
        5 if cmd.is(b"XREAD") => xread(cmd, 1),
        10 if cmd.is(b"XREADGROUP") => xread(cmd, 4),
        6 if cmd.is(b"SELECT") => select(cmd, pool_db),
        6 if cmd.is(b"CLIENT") => client(cmd),
        _ => Route::Forward,
    }
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS ...`: pinned only with `BLOCK`.
fn xread(cmd: &Command<'_>, first_option: usize) -> Route {
    if xread_blocks(cmd, first_option) {
        Route::Pin
    } else {
        Route::Forward
    }
}

fn xread_blocks(cmd: &Command<'_>, first_option: usize) -> bool {
    // One walk over the arguments (`arg(i)` past the cached ones walks
    // from the start each time: quadratic on a long command).
    cmd.args()
        .skip(first_option.saturating_sub(1))
        .take_while(|a| !a.eq_ignore_ascii_case(b"STREAMS"))
        .any(|a| a.eq_ignore_ascii_case(b"BLOCK"))
}

/// Commands after which a pinned connection's replies no longer match its
/// commands one to one: subscriptions and `MONITOR` (pushes and unsolicited
/// messages) and `CLIENT REPLY` (skipped or suppressed replies).
const UNCOUNTABLE: &[&[u8]] = &[
    b"SUBSCRIBE",
    b"PSUBSCRIBE",
    b"SSUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SUNSUBSCRIBE",
    b"MONITOR",
];

/// Whether the replies after `cmd` on a pinned connection can no longer be
/// counted against its commands ([`UNCOUNTABLE`], `CLIENT REPLY`).
pub(crate) fn ends_reply_counting(cmd: &Command<'_>) -> bool {
    UNCOUNTABLE.iter().any(|n| cmd.is(n))
        || (cmd.is(b"CLIENT") && cmd.arg(1).is_some_and(|a| a.eq_ignore_ascii_case(b"REPLY")))
}

/// Whether `cmd`, run outside a transaction, may block the connection
/// until data arrives or a timeout passes: [`BLOCKING`], and `XREAD` /
/// `XREADGROUP` with `BLOCK`.
pub(crate) fn is_blocking(cmd: &Command<'_>) -> bool {
    let name = cmd.name();
    if BLOCKING.iter().any(|n| name.eq_ignore_ascii_case(n)) {
        return true;
    }
    match name.len() {
        5 if cmd.is(b"XREAD") => xread_blocks(cmd, 1),
        10 if cmd.is(b"XREADGROUP") => xread_blocks(cmd, 4),
        _ => false,
    }
}

/// `SELECT db`: the pool's own database is stateless; any other pins. Arguments
/// Redis would reject are forwarded so Redis answers its own error.
fn select(cmd: &Command<'_>, pool_db: u32) -> Route {
    let db = cmd
        .arg(1)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse::<i64>().ok());
    match db {
        Some(db) if db != i64::from(pool_db) && cmd.len() == 2 => Route::Pin,
        _ => Route::Forward,
    }
}

fn client(cmd: &Command<'_>) -> Route {
    let Some(sub) = cmd.arg(1) else {
        return Route::Forward;
    };
    if CLIENT_STATEFUL.iter().any(|s| sub.eq_ignore_ascii_case(s)) {
        Route::Pin
    } else if sub.eq_ignore_ascii_case(b"SETINFO") {
        Route::Local(Local::ClientSetInfo)
    } else {
        Route::Forward
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(line: &str) -> Route {
        let frame = format!("{line}\r\n");
        classify(&Command::parse(frame.as_bytes()).unwrap(), 0)
    }

    #[test]
    fn blocking_commands_are_told_apart() {
        let blocks = |line: &str| {
            let frame = format!("{line}\r\n");
            is_blocking(&Command::parse(frame.as_bytes()).unwrap())
        };
        for c in [
            "BLPOP l 0",
            "bzpopmax z 1",
            "WAIT 1 0",
            "WAITAOF 1 0 0",
            "XREAD BLOCK 0 STREAMS s $",
            "XREADGROUP GROUP g c BLOCK 10 STREAMS s >",
            // Past the arguments a `Command` indexes (found by walking).
            "XREADGROUP GROUP g c COUNT 1 NOACK BLOCK 10 STREAMS s >",
        ] {
            assert!(blocks(c), "{c}");
        }
        for c in [
            "LPOP l",
            "XREAD STREAMS s 0",
            "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS BLOCK s > >",
            "XREAD STREAMS BLOCK 0",
            "MULTI",
            "EXEC",
        ] {
            assert!(!blocks(c), "{c}");
        }
    }

    #[test]
    fn stateless_commands_are_forwarded() {
        for c in [
            "GET k",
            "set k v",
            "EXEC",
            "UNWATCH",
            "SELECT 0",
            "SELECT x",
            "PING",
            "XREAD STREAMS s 0",
            "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS BLOCK s > >",
            "del k",
            "TTL k",
            "x",
        ] {
            assert_eq!(route(c), Route::Forward, "{c}");
        }
    }

    #[test]
    fn state_and_blocking_pin() {
        for c in [
            "multi",
            "WATCH k",
            "BLPOP l 0",
            "bzmpop 0 1 z MIN",
            "SELECT 3",
            "subscribe c",
            "CLIENT TRACKING on",
            "client id",
            "client reply off",
            "XREAD COUNT 2 BLOCK 0 STREAMS s $",
            "XREADGROUP GROUP g c BLOCK 10 STREAMS s >",
            // Past the arguments a `Command` indexes (found by walking).
            "XREADGROUP GROUP g c COUNT 1 NOACK BLOCK 10 STREAMS s >",
            "WAIT 1 0",
        ] {
            assert_eq!(route(c), Route::Pin, "{c}");
        }
    }

    #[test]
    fn no_special_name_is_short_enough_for_the_fast_path() {
        let matched: &[&[u8]] = &[
            b"AUTH",
            b"QUIT",
            b"HELLO",
            b"RESET",
            b"XREAD",
            b"XREADGROUP",
            b"SELECT",
            b"CLIENT",
        ];
        for name in BLOCKING
            .iter()
            .chain(STATEFUL)
            .chain(REFUSED)
            .chain(matched)
        {
            assert!(name.len() >= 4, "{}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn local_and_refused() {
        assert_eq!(route("QUIT"), Route::Local(Local::Quit));
        assert_eq!(route("nexus.stats"), Route::Local(Local::Nexus));
        assert_eq!(
            route("CLIENT SETINFO lib-name x"),
            Route::Local(Local::ClientSetInfo)
        );
        assert_eq!(route("psync ? -1"), Route::Refuse);
        assert_eq!(route("SHUTDOWN"), Route::Refuse);
    }
}
