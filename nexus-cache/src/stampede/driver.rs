//! The task behind one key's room: acquires the lease or reads the filled
//! value, hands the lease to the oldest held reader, wakes everyone on a
//! fill. One per key and proxy while readers are held; it ends when the
//! key is filled or no reader is left (each waits at most `wait_timeout`),
//! so its lifetime is bounded too.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::table::{Entry, Held, Lease, Table, Waiter};
use super::{ACQUIRE_SCRIPT, Guard, RELEASE_SCRIPT, fresh_millis, millis};
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
    let [lease_key, fresh_key] = Guard::cancel_keys(&key);
    let lock_ms = millis(policy.lock_ttl).to_string();
    let fresh_ms = fresh_millis(&policy).to_string();
    let poll = poll_interval(&policy);
    // Set once the lease was seen held by someone else: a lease obtained
    // later is a handover.
    let mut contended = false;
    loop {
        let token = guard.token();
        // Recorded before the read is sent: its value answers only readers
        // that joined with no invalidation in between.
        let Some(sent) = guard.table.with(&key, |e| e.generation) else {
            return;
        };
        let reply = ACQUIRE_SCRIPT
            .call(
                &lane,
                &[&key, &lease_key, &fresh_key],
                &[&token, lock_ms.as_bytes(), fresh_ms.as_bytes()],
            )
            .await;
        match reply.first() {
            Some(b':') if reply[..] == *b":1\r\n" => {
                let now = Instant::now();
                let handed = guard
                    .table
                    .with(&key, |e| {
                        while let Some(w) = e.waiters.pop_front() {
                            let lease = Lease::new(token.clone(), w.client, now, policy.lock_ttl);
                            if w.tx.send(Held::Lease { waited: contended }).is_ok() {
                                e.grant(lease);
                                return true;
                            }
                        }
                        false
                    })
                    .unwrap_or(false);
                if handed {
                    guard.metrics.leases_taken.fetch_add(1, Relaxed);
                } else {
                    RELEASE_SCRIPT
                        .call(&lane, &[&lease_key, &fresh_key], &[&token])
                        .await;
                }
                contended = true;
            }
            Some(b':') => contended = true,
            Some(b'$' | b'*') => {
                // Filled, or the `GET`'s own error (`*1` around it, see
                // `ACQUIRE`), which Redis would give every reader.
                let reply = match reply.strip_prefix(b"*1\r\n") {
                    Some(err) if err.starts_with(b"-") => reply.slice(4..),
                    Some(_) => {
                        tracing::debug!(reply = %String::from_utf8_lossy(&reply), "unexpected lease script reply");
                        Bytes::from_static(super::NIL)
                    }
                    None => reply,
                };
                let keep = reply.starts_with(b"$") && policy.serve_stale_for.is_some();
                let (answered, more) = guard
                    .table
                    .with(&key, |e| settle(&guard.table, e, sent, &reply, keep))
                    .unwrap_or_default();
                for w in answered {
                    let _ = w.tx.send(Held::Reply(reply.clone()));
                }
                if !more {
                    return;
                }
                // Readers that joined after an invalidation this read may
                // predate: read again for them (each still waits at most
                // `wait_timeout`).
                continue;
            }
            Some(b'-') if !is_connection_error(&reply) => {
                // Redis refused the script itself (out of memory for the
                // lease's `SET`, `READONLY`, `NOPERM`, `BUSY`...): not an
                // answer about the key, and no lease can be taken. The
                // readers get the nil now, as without the guard (a `GET`
                // of the missing key answers nil there).
                tracing::debug!(reply = %String::from_utf8_lossy(&reply), "lease script refused");
                guard.table.with(&key, |e| {
                    e.waiters.clear();
                    e.driver = None;
                });
                return;
            }
            // The proxy's upstream link failed: try again at the next poll
            // (readers get the nil after `wait_timeout` at the latest).
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

/// After a read sent at generation `sent` returned `reply` (a value or an
/// error): takes the readers it may answer (joined at `sent` or before),
/// keeps the stale copy if `keep` and the key was not invalidated since,
/// and ends the room unless readers that joined later remain (`true`).
fn settle(
    table: &Table,
    e: &mut Entry,
    sent: u64,
    reply: &[u8],
    keep: bool,
) -> (VecDeque<Waiter>, bool) {
    if keep {
        table.keep(e, reply, Instant::now(), sent);
    }
    let (answered, later): (VecDeque<Waiter>, _) = std::mem::take(&mut e.waiters)
        .into_iter()
        .partition(|w| w.generation <= sent);
    e.waiters = later;
    e.waiters.retain(|w| !w.tx.is_closed());
    let more = !e.waiters.is_empty();
    if !more {
        e.driver = None;
    }
    (answered, more)
}

/// Errors produced by the proxy's own upstream handling, as opposed to
/// Redis's answer.
fn is_connection_error(reply: &[u8]) -> bool {
    reply.starts_with(b"-ERR upstream")
        || reply.starts_with(b"-ERR nexus")
        || reply.starts_with(b"-ERR proxy shutting down")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use tokio::sync::oneshot;

    use super::*;

    fn join(t: &Table, key: &Bytes, client: u64) -> oneshot::Receiver<Held> {
        let (tx, rx) = oneshot::channel();
        t.with_new(key, |e| {
            e.driver.get_or_insert_with(|| Arc::new(Notify::new()));
            e.waiters.push_back(Waiter {
                tx,
                client,
                generation: e.generation,
            });
        })
        .unwrap();
        rx
    }

    #[tokio::test]
    async fn a_read_sent_before_a_deletion_answers_no_later_reader() {
        let t = Table::new();
        let key = Bytes::from_static(b"k");
        let _early = join(&t, &key, 1);
        // The driver sends its read (it will see v1)...
        let sent = t.with(&key, |e| e.generation).unwrap();
        // ...a deletion runs and is acknowledged, and a reader told of it
        // finds nothing and joins the room...
        t.invalidate(&key, |_| {});
        let _late = join(&t, &key, 2);
        // ...then the read's v1 arrives.
        let v1 = b"$2\r\nv1\r\n";
        let (answered, more) = t.with(&key, |e| settle(&t, e, sent, v1, true)).unwrap();
        let answered: Vec<u64> = answered.iter().map(|w| w.client).collect();
        assert_eq!(answered, [1], "only the reader that joined before the read");
        assert!(more, "the driver reads again for the later reader");
        let (left, driving) = t
            .with(&key, |e| (e.waiters.len(), e.driver.is_some()))
            .unwrap();
        assert_eq!((left, driving), (1, true));
        // v1 is not kept as the stale copy either.
        let stale = t
            .with(&key, |e| {
                Table::stale(e, Duration::from_secs(60), Instant::now())
            })
            .flatten();
        assert!(stale.is_none(), "deleted value kept as stale copy");
        // The next read, sent after the deletion, answers it and ends the room.
        let sent = t.with(&key, |e| e.generation).unwrap();
        let v2 = b"$2\r\nv2\r\n";
        let (answered, more) = t.with(&key, |e| settle(&t, e, sent, v2, true)).unwrap();
        assert_eq!(answered.iter().map(|w| w.client).collect::<Vec<_>>(), [2]);
        assert!(!more);
        assert!(t.with(&key, |e| e.driver.is_none()).unwrap());
        let stale = t
            .with(&key, |e| {
                Table::stale(e, Duration::from_secs(60), Instant::now())
            })
            .flatten();
        assert_eq!(stale.as_deref(), Some(&v2[..]));
    }
}
