//! The heartbeat task of a group member.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kafka_protocol::messages::{GroupId, HeartbeatRequest};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::super::conn::{ConnOptions, Connection};
use super::super::error::check;
use super::group::{Membership, needs_rejoin, s};

const HEARTBEAT_MAX: i16 = 4;

/// A task heartbeating on its own connection; raises `rejoin` when the
/// coordinator asks for a rebalance or forgets the member.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    join: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    pub(crate) rejoin: Arc<AtomicBool>,
}

impl Heartbeat {
    pub(crate) fn spawn(
        addr: String,
        opts: ConnOptions,
        group: String,
        m: &Membership,
        every: Duration,
    ) -> Self {
        let rejoin = Arc::new(AtomicBool::new(false));
        let (stop_tx, mut stop_rx) = oneshot::channel();
        let flag = rejoin.clone();
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(&group)))
            .with_generation_id(m.generation)
            .with_member_id(s(&m.member_id));
        let join = tokio::spawn(async move {
            let mut conn: Option<Connection> = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return,
                    _ = tick.tick() => {}
                }
                if conn.is_none() {
                    conn = Connection::connect(&addr, &opts).await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                match c.request(&req, HEARTBEAT_MAX).await {
                    Ok(resp) => {
                        if let Err(e) = check(resp.error_code, || format!("heartbeat to {group}")) {
                            if needs_rejoin(&e) {
                                tracing::info!(error = %e, "coordinator asked this member to rejoin");
                                flag.store(true, Ordering::Release);
                                return;
                            }
                            tracing::warn!(error = %e, "heartbeat refused");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "heartbeat failed; reconnecting");
                        conn = None;
                    }
                }
            }
        });
        Self {
            join,
            stop: Some(stop_tx),
            rejoin,
        }
    }

    pub(crate) fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire)
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.join.abort();
    }
}
