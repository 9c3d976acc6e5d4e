//! The group consumer: membership in [`group`], reads in [`fetch`].

mod assignor;
mod fetch;
mod group;
mod heartbeat;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;

use super::cluster::Cluster;
use super::config::ConsumerConfig;
use super::conn::Connection;
use super::error::KafkaError;
use fetch::PartitionFetch;
use group::{Membership, needs_rejoin};
use heartbeat::Heartbeat;

/// A record read by a [`GroupConsumer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Topic it was read from.
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Producer timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers, in order (values may be null).
    pub headers: Vec<(String, Option<Bytes>)>,
}

impl ConsumedRecord {
    /// The headers as `(key, value)` pairs, a null value read as empty: the
    /// shape `TraceContext::from_record_headers` takes.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref().unwrap_or_default()))
    }

    /// The value of the first header named `key` (case-sensitive).
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A member of a Kafka consumer group.
///
/// ```text
/// let mut c = GroupConsumer::join(config).await?;
/// loop {
///     let records = c.poll().await?;   // rejoins transparently on rebalance
///     handle(&records);
///     c.commit(&records).await?;       // at-least-once: commit after handling
/// }
/// c.close().await;                     // LeaveGroup: partitions move at once
/// ```
///
/// Bounds: one fetch response (`fetch_max_bytes`) buffered at a time; the
/// consumer holds one connection per partition leader plus two to the
/// coordinator (requests and heartbeats).
#[derive(Debug)]
pub struct GroupConsumer {
    config: ConsumerConfig,
    cluster: Cluster,
    coordinator: Option<(String, Connection)>,
    membership: Membership,
    heartbeat: Option<Heartbeat>,
    positions: BTreeMap<(String, i32), i64>,
    /// Last high watermark seen per assigned partition (for [`Self::lag`]).
    high_watermarks: BTreeMap<(String, i32), i64>,
    topic_names: BTreeMap<String, Arc<str>>,
}

impl GroupConsumer {
    /// Validates `config`, creates the topics if configured, and joins the
    /// group (this waits for the group's rebalance to complete).
    pub async fn join(config: ConsumerConfig) -> Result<Self, KafkaError> {
        config.validate()?;
        let mut cluster = Cluster::new(&config.client);
        cluster
            .refresh(&config.topics, config.create_topics)
            .await?;
        let mut me = Self {
            config,
            cluster,
            coordinator: None,
            membership: Membership::default(),
            heartbeat: None,
            positions: BTreeMap::new(),
            high_watermarks: BTreeMap::new(),
            topic_names: BTreeMap::new(),
        };
        me.rejoin().await?;
        Ok(me)
    }

    /// Partitions currently assigned to this member, sorted.
    pub fn assignment(&self) -> &[(String, i32)] {
        &self.membership.assignment
    }

    /// This member's id in the group.
    pub fn member_id(&self) -> &str {
        &self.membership.member_id
    }

    /// Records not yet read on the assigned partitions: the sum over them of
    /// (high watermark - read position), as of the last fetch of each.
    /// `None` until a fetch reported a high watermark.
    ///
    /// Records already returned by [`poll`](Self::poll) but not yet handled
    /// are not counted, unless [`seek`](Self::seek) moved the position back
    /// to them; records produced since the last fetch are not counted until
    /// the next one (the high watermark is only learnt from fetches).
    pub fn lag(&self) -> Option<u64> {
        let mut total = None;
        for (tp, hw) in &self.high_watermarks {
            if let Some(pos) = self.positions.get(tp) {
                let lag = u64::try_from(hw - pos).unwrap_or(0);
                total = Some(total.unwrap_or(0) + lag);
            }
        }
        total
    }

    /// The group generation this member belongs to.
    pub fn generation(&self) -> i32 {
        self.membership.generation
    }

    async fn coordinator(&mut self) -> Result<&mut Connection, KafkaError> {
        if self.coordinator.is_none() {
            self.coordinator =
                Some(group::coordinator(&mut self.cluster, &self.config.group_id).await?);
        }
        match self.coordinator.as_mut() {
            Some((_, c)) => Ok(c),
            None => Err(KafkaError::NoBroker {
                last: "no coordinator".into(),
            }),
        }
    }

    /// Joins again, retrying while the coordinator reports a rebalance in
    /// progress, bounded by twice the rebalance timeout.
    async fn rejoin(&mut self) -> Result<(), KafkaError> {
        let deadline = tokio::time::Instant::now() + self.config.rebalance_timeout * 2;
        loop {
            match self.rejoin_once().await {
                Err(e) if needs_rejoin(&e) && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "group rebalancing; joining again");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Leaves the current generation's state behind and joins again.
    async fn rejoin_once(&mut self) -> Result<(), KafkaError> {
        if let Some(hb) = self.heartbeat.take() {
            hb.stop().await;
        }
        self.positions.clear();
        self.high_watermarks.clear();
        let member = self.membership.member_id.clone();
        let config = self.config.clone();
        let res = async {
            self.coordinator().await?;
            let Some((_, conn)) = self.coordinator.as_mut() else {
                return Err(KafkaError::NoBroker {
                    last: "no coordinator".into(),
                });
            };
            group::join(&mut self.cluster, conn, &config, &member).await
        }
        .await;
        let membership = match res {
            Ok(m) => m,
            Err(e) => {
                if matches!(
                    e,
                    KafkaError::Broker {
                        error: ResponseError::UnknownMemberId,
                        ..
                    }
                ) {
                    self.membership.member_id.clear();
                }
                if e.poisons_connection()
                    || matches!(
                        e,
                        KafkaError::Broker {
                            error: ResponseError::NotCoordinator
                                | ResponseError::CoordinatorNotAvailable,
                            ..
                        }
                    )
                {
                    self.coordinator = None;
                }
                return Err(e);
            }
        };
        self.membership = membership;
        let Some((addr, _)) = self.coordinator.as_ref() else {
            return Err(KafkaError::NoBroker {
                last: "no coordinator".into(),
            });
        };
        self.heartbeat = Some(Heartbeat::spawn(
            addr.clone(),
            self.cluster.options().clone(),
            self.config.group_id.clone(),
            &self.membership,
            self.config.heartbeat_interval,
        ));
        self.load_positions().await
    }

    /// Start positions: committed offset, else the earliest offset.
    async fn load_positions(&mut self) -> Result<(), KafkaError> {
        let assignment = self.membership.assignment.clone();
        if assignment.is_empty() {
            return Ok(());
        }
        let group_id = self.config.group_id.clone();
        let committed =
            group::fetch_offsets(self.coordinator().await?, &group_id, &assignment).await?;
        let mut unknown = Vec::new();
        for tp in assignment {
            match committed.get(&tp).copied().flatten() {
                Some(o) => {
                    self.positions.insert(tp, o);
                }
                None => unknown.push(tp),
            }
        }
        self.cluster.refresh(&self.config.topics, None).await?;
        for (leader, tps) in self.by_leader(&unknown) {
            let mut conn = self.cluster.take_conn(leader).await?;
            let res = fetch::earliest(&mut conn, &tps).await;
            if res.as_ref().is_ok() || !res.as_ref().is_err_and(KafkaError::poisons_connection) {
                self.cluster.put_conn(leader, conn);
            }
            self.positions.extend(res?);
        }
        Ok(())
    }

    fn by_leader(&self, tps: &[(String, i32)]) -> BTreeMap<i32, Vec<(String, i32)>> {
        let mut out: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (t, p) in tps {
            let leader = self
                .cluster
                .topic(t)
                .and_then(|m| m.leaders.get(*p as usize).copied())
                .unwrap_or(-1);
            out.entry(leader).or_default().push((t.clone(), *p));
        }
        out
    }

    /// Returns the next records (possibly none after `fetch_max_wait`),
    /// rejoining first if the group is rebalancing.
    pub async fn poll(&mut self) -> Result<Vec<ConsumedRecord>, KafkaError> {
        if self.heartbeat.as_ref().is_none_or(Heartbeat::needs_rejoin) {
            self.rejoin().await?;
        }
        if self.positions.is_empty() {
            // Nothing assigned: wait like an empty fetch would, then report.
            tokio::time::sleep(self.config.fetch_max_wait).await;
            return Ok(Vec::new());
        }
        let tps: Vec<(String, i32)> = self.positions.keys().cloned().collect();
        let mut out = Vec::new();
        let mut refresh = false;
        for (leader, tps) in self.by_leader(&tps) {
            if leader < 0 {
                refresh = true;
                continue;
            }
            let positions: Vec<((String, i32), i64)> = tps
                .into_iter()
                .filter_map(|tp| self.positions.get(&tp).map(|o| (tp, *o)))
                .collect();
            let mut conn = match self.cluster.take_conn(leader).await {
                Ok(c) => c,
                Err(e) => {
                    self.cluster.reset();
                    return Err(e);
                }
            };
            let res =
                fetch::fetch(&mut conn, &self.config, &positions, &mut self.topic_names).await;
            let results = match res {
                Ok(r) => {
                    self.cluster.put_conn(leader, conn);
                    r
                }
                Err(e) => {
                    if !e.poisons_connection() {
                        self.cluster.put_conn(leader, conn);
                    }
                    return Err(e);
                }
            };
            for (tp, result) in results {
                match result {
                    PartitionFetch::Records(records, next, high_watermark) => {
                        if high_watermark >= 0 {
                            self.high_watermarks.insert(tp.clone(), high_watermark);
                        }
                        self.positions.insert(tp, next);
                        out.extend(records);
                    }
                    PartitionFetch::Error(KafkaError::Broker {
                        error: ResponseError::OffsetOutOfRange,
                        ..
                    }) => {
                        tracing::warn!(topic = %tp.0, partition = tp.1, "offset out of range; resetting to earliest");
                        let mut conn = self.cluster.take_conn(leader).await?;
                        let earliest = fetch::earliest(&mut conn, std::slice::from_ref(&tp)).await;
                        self.cluster.put_conn(leader, conn);
                        self.positions.extend(earliest?);
                    }
                    PartitionFetch::Error(e) if e.is_retriable() => refresh = true,
                    PartitionFetch::Error(e) => return Err(e),
                }
            }
        }
        if refresh {
            self.cluster.refresh(&self.config.topics, None).await?;
        }
        Ok(out)
    }

    /// Commits, per partition, the offset after the highest record in
    /// `handled`. Records from partitions no longer assigned are skipped.
    pub async fn commit(&mut self, handled: &[ConsumedRecord]) -> Result<(), KafkaError> {
        let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for r in handled {
            let tp = (r.topic.to_string(), r.partition);
            if !self.membership.assignment.contains(&tp) {
                continue;
            }
            let next = offsets.entry(tp).or_insert(0);
            *next = (*next).max(r.offset + 1);
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let group_id = self.config.group_id.clone();
        let membership = self.membership.clone();
        let conn = self.coordinator().await?;
        let res = group::commit(conn, &group_id, &membership, &offsets).await;
        if let Err(e) = &res {
            if e.poisons_connection() || needs_rejoin(e) {
                self.coordinator = None;
            }
            if needs_rejoin(e)
                && let Some(hb) = &self.heartbeat
            {
                hb.rejoin.store(true, std::sync::atomic::Ordering::Release);
            }
        }
        res
    }

    /// Moves the read position of an assigned partition (e.g. back to the
    /// first record a handler could not process, for a retry). Ignored for
    /// partitions not assigned to this member.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) {
        if let Some(p) = self.positions.get_mut(&(topic.to_owned(), partition)) {
            *p = offset.max(0);
        }
    }

    /// Stops heartbeats and leaves the group so its partitions move at once.
    /// An error means the coordinator did not confirm; the partitions then
    /// move when the session times out.
    pub async fn close(mut self) -> Result<(), KafkaError> {
        if let Some(hb) = self.heartbeat.take() {
            hb.stop().await;
        }
        let member = self.membership.member_id.clone();
        if member.is_empty() {
            return Ok(());
        }
        let group_id = self.config.group_id.clone();
        let conn = self.coordinator().await?;
        group::leave(conn, &group_id, &member).await
    }
}
