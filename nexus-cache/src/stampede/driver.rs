//! The task behind one key's room: acquires the lease or reads the filled
//! value, hands the lease to the oldest held reader, wakes everyone on a
//! fill. One per key and proxy while readers are held; it ends when the
//! key is filled or no reader is left (each waits at most `wait_timeout`),
//! so its lifetime is bounded too.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::table::{Held, Lease};
use super::{ACQUIRE_SCRIPT, Guard, RELEASE_SCRIPT, millis};
use crate::policy::StampedePolicy;

/// How often the driver looks at Redis for fills made elsewhere.
pub(crate) fn poll_interval(policy: &StampedePolicy) -> Duration {
    (policy.wait_timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

pub(super) async fn drive(
    guard: Arc<Guard>,
    key: Bytes,
    policy: StampedePolicy,
    wake: Arc<Notify>,
) {
    let lane = guard.pool.assign();
    let lease_key = Guard::lease_key(&key);
    let lock_ms = millis(policy.lock_ttl).to_string();
    let poll = poll_interval(&policy);
    // Set once the lease was seen held by someone else: a lease obtained
    // later is a handover.
    let mut contended = false;
    loop {
        let token = guard.token();
        let reply = ACQUIRE_SCRIPT
            .call(&lane, &[&key, &lease_key], &[&token, lock_ms.as_bytes()])
            .await;
        match reply.first() {
            Some(b':') if reply[..] == *b":1\r\n" => {
                let now = Instant::now();
                let handed = guard
                    .table
                    .with(&key, |e| {
                        while let Some(w) = e.waiters.pop_front() {
                            let lease = Lease {
                                token: token.clone(),
                                holder: w.client,
                                granted: now,
                                expires: now + policy.lock_ttl,
                            };
                            if w.tx.send(Held::Lease { waited: contended }).is_ok() {
                                e.lease = Some(lease);
                                return true;
                            }
                        }
                        false
                    })
                    .unwrap_or(false);
                if handed {
                    guard.metrics.leases_taken.fetch_add(1, Relaxed);
                } else {
                    RELEASE_SCRIPT.call(&lane, &[&lease_key], &[&token]).await;
                }
                contended = true;
            }
            Some(b':') => contended = true,
            Some(b'$' | b'-') if !is_connection_error(&reply) => {
                // Filled (or an error Redis would give every reader).
                let waiters = guard
                    .table
                    .with(&key, |e| {
                        e.driver = None;
                        std::mem::take(&mut e.waiters)
                    })
                    .unwrap_or_default();
                if reply.starts_with(b"$") && policy.serve_stale_for.is_some() {
                    guard.table.remember(&key, &reply, Instant::now());
                }
                for w in waiters {
                    let _ = w.tx.send(Held::Reply(reply.clone()));
                }
                return;
            }
            // The proxy's upstream link failed: try again at the next poll.
            _ => {}
        }
        let done = guard
            .table
            .with(&key, |e| {
                e.waiters.retain(|w| !w.tx.is_closed());
                if e.waiters.is_empty() {
                    e.driver = None;
                }
                e.waiters.is_empty()
            })
            .unwrap_or(true);
        if done {
            return;
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// Errors produced by the proxy's own upstream handling, as opposed to
/// Redis's answer about the key.
fn is_connection_error(reply: &[u8]) -> bool {
    reply.starts_with(b"-ERR upstream")
        || reply.starts_with(b"-ERR nexus")
        || reply.starts_with(b"-ERR proxy shutting down")
}
