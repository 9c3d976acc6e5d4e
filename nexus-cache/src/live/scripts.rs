//! Lua scripts the proxy sends itself, by SHA.
//!
//! Each script is loaded with `SCRIPT LOAD` on first use; its SHA is kept and
//! calls go out as `EVALSHA`. A `NOSCRIPT` reply (Redis restarted, `SCRIPT
//! FLUSH`, failover) loads the script again and retries once. Calls travel on
//! a [`Lane`], so a call made for a client is ordered after that client's
//! earlier commands.

use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use crate::resp::{Limits, Scanner, encode};
use crate::upstream::{Lane, Reply};

/// One script and its SHA once known.
#[derive(Debug)]
pub(crate) struct Script {
    body: &'static str,
    /// Bound: one SHA (40 bytes).
    sha: Mutex<Option<Bytes>>,
}

impl Script {
    pub(crate) const fn new(body: &'static str) -> Self {
        Self {
            body,
            sha: Mutex::new(None),
        }
    }

    fn cached(&self) -> Option<Bytes> {
        self.sha
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `SCRIPT LOAD`: the SHA, or the reply to pass on when loading failed.
    async fn load(&self, lane: &Lane) -> Result<Bytes, Bytes> {
        let mut req = BytesMut::new();
        encode::command(&mut req, &[b"SCRIPT", b"LOAD", self.body.as_bytes()]);
        let reply = one(lane.call(req.freeze(), 1).await);
        // `$40\r\n<sha>\r\n`
        match reply.strip_prefix(b"$40\r\n") {
            Some(rest) if rest.len() == 42 => {
                let sha = Bytes::copy_from_slice(&rest[..40]);
                *self.sha.lock().unwrap_or_else(PoisonError::into_inner) = Some(sha.clone());
                Ok(sha)
            }
            _ => Err(reply),
        }
    }

    /// Runs the script with `keys` and `argv`; returns the raw reply (an
    /// error line when Redis or the connection failed).
    pub(crate) async fn call(&self, lane: &Lane, keys: &[&[u8]], argv: &[&[u8]]) -> Bytes {
        self.call_after(lane, None, keys, argv).await
    }

    /// As [`Script::call`], with `before` (one complete command, which must
    /// be safe to repeat) sent right before the script in the same batch,
    /// so Redis runs the two back to back; its reply is dropped.
    pub(crate) async fn call_after(
        &self,
        lane: &Lane,
        before: Option<&[u8]>,
        keys: &[&[u8]],
        argv: &[&[u8]],
    ) -> Bytes {
        let mut retried = false;
        loop {
            let sha = match self.cached() {
                Some(s) => s,
                None => match self.load(lane).await {
                    Ok(s) => s,
                    Err(reply) => return reply,
                },
            };
            let numkeys = keys.len().to_string();
            let mut args: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + argv.len());
            args.extend([&b"EVALSHA"[..], &sha, numkeys.as_bytes()]);
            args.extend_from_slice(keys);
            args.extend_from_slice(argv);
            let mut req = BytesMut::new();
            req.extend_from_slice(before.unwrap_or_default());
            encode::command(&mut req, &args);
            let reply = match before {
                None => one(lane.call(req.freeze(), 1).await),
                Some(_) => second(lane.call(req.freeze(), 2).await),
            };
            if reply.starts_with(b"-NOSCRIPT") && !retried {
                retried = true;
                *self.sha.lock().unwrap_or_else(PoisonError::into_inner) = None;
                continue;
            }
            return reply;
        }
    }
}

/// The reply to a one-command batch, or its error line.
pub(crate) fn one(reply: Reply) -> Bytes {
    match reply.failure {
        Some((_, e)) => e.to_resp(),
        None => reply.bytes,
    }
}

/// The reply to the second command of a two-command batch (the first
/// one's is dropped), or its error line.
pub(crate) fn second(reply: Reply) -> Bytes {
    let first = Scanner::new(Limits::default())
        .scan(&reply.bytes)
        .ok()
        .flatten();
    match (first, reply.failure) {
        (Some(n), _) if n < reply.bytes.len() => reply.bytes.slice(n..),
        (_, Some((_, e))) => e.to_resp(),
        // Not reached: a batch of two is answered twice or fails.
        _ => crate::error::UpstreamError::ConnectionLost.to_resp(),
    }
}

/// The value of an integer reply (`:n\r\n`).
pub(crate) fn integer(reply: &[u8]) -> Option<i64> {
    let digits = reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
