//! Lingering close: how the proxy ends a connection it refuses while the
//! client may still be sending.
//!
//! Closing a socket with unread input makes Linux answer with a reset
//! (RST) instead of a FIN, and purge the socket's send queue: the replies
//! due before the refusal that the client has not read yet, and the
//! `-ERR Protocol error: ...` line itself, are lost (the client sees
//! `ECONNRESET` mid-reply, or a reply silently cut). A client refused for
//! a command longer than `max_command_len` is by definition still sending
//! it, so this is the usual case, not a corner one.
//!
//! So, once the last reply and the error are written, the proxy shuts its
//! write half (the client reads everything, then EOF) and keeps reading
//! and discarding the client's input, into one small scratch buffer
//! ([`SCRATCH`]), until the client closes, [`linger_bound`] passes, or
//! the proxy shuts down; only then is the socket dropped. The input is
//! discarded while the replies are still being written too, so that a
//! client blocked sending the rest of a long command gets to read them.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::sync::CancellationToken;

use crate::config::ProxyConfig;

/// Bytes read at a time from a client whose input is discarded: all a
/// lingering connection holds besides its socket.
const SCRATCH: usize = 4 * 1024;

/// How long a refused client's input is still read and discarded after
/// the proxy's last byte to it: `shutdown_grace` (default 5 s), the time
/// the proxy already gives a client to wind down before closing it. A few
/// seconds are plenty for a client to read replies already in flight and
/// notice the EOF, and bound what a refused connection costs (its
/// `max_clients` permit, a socket, [`SCRATCH`] bytes). Shutdown ends it
/// at once, so it never delays shutdown.
pub(super) fn linger_bound(config: &ProxyConfig) -> Duration {
    config.shutdown_grace
}

/// Reads and discards the client's input until it ends. True on EOF (the
/// client may still read), false on an error (it is gone).
pub(super) async fn discard(rd: &mut OwnedReadHalf) -> bool {
    let mut scratch = [0u8; SCRATCH];
    loop {
        match rd.read(&mut scratch).await {
            Ok(0) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
}

/// The lingering close itself, once the write half is shut: discards the
/// client's input until it closes, `bound` passes, or `shutdown`.
pub(super) async fn linger(rd: &mut OwnedReadHalf, bound: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => {}
        _ = tokio::time::timeout(bound, discard(rd)) => {}
    }
}
