//! Batching Kafka producer: keyed murmur2 partitioning, record batches v2,
//! per-leader requests, retries with backoff, metadata refresh and reconnects.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::join_all;

use super::cluster::Cluster;
use super::config::ProducerConfig;
use super::error::KafkaError;
use super::murmur2::partition_for_key;

mod request;

use request::{RECORD_OVERHEAD, produce_to};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Destination topic.
    pub topic: Cow<'static, str>,
    /// Partitioning key; `None` spreads records round-robin.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Record headers, in order (e.g. `traceparent`); empty allocates nothing.
    pub headers: Vec<(String, Bytes)>,
}

impl OutRecord {
    /// A record stamped with the current time, without headers.
    pub fn new(topic: impl Into<Cow<'static, str>>, key: Option<Bytes>, value: Bytes) -> Self {
        Self {
            topic: topic.into(),
            key,
            value,
            timestamp_ms: now_ms(),
            headers: Vec::new(),
        }
    }

    /// Adds a record header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Bytes this record adds to a batch, for sizing requests.
    fn wire_size(&self) -> usize {
        self.value.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 10)
                .sum::<usize>()
            + RECORD_OVERHEAD
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Outcome of [`Producer::send`].
#[derive(Debug, Default)]
pub struct SendReport {
    /// Records acknowledged (or written, with `acks = 0`).
    pub sent: usize,
    /// Records given up on.
    pub failed: usize,
    /// The last error met, if any.
    pub last_error: Option<KafkaError>,
}

/// A Kafka producer. Not a background task itself: [`KafkaSink`](super::KafkaSink)
/// drives it from the emitter's task, or call [`Producer::send`] directly.
#[derive(Debug)]
pub struct Producer {
    config: ProducerConfig,
    cluster: Cluster,
    /// Round-robin cursor for key-less records.
    round_robin: u32,
}

/// Records of one topic-partition destined for one request.
struct Chunk {
    topic: usize,
    partition: i32,
    records: Vec<usize>,
}

impl Producer {
    /// Validates `config`; connects lazily on the first send.
    pub fn new(config: ProducerConfig) -> Result<Self, KafkaError> {
        config.validate()?;
        let cluster = Cluster::new(&config.client);
        Ok(Self {
            config,
            cluster,
            round_robin: 0,
        })
    }

    /// Connects, fetches metadata for `topics` and creates them if configured.
    pub async fn prepare(&mut self, topics: &[&str]) -> Result<(), KafkaError> {
        let topics: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        self.cluster
            .refresh(&topics, self.config.create_topics)
            .await
    }

    /// Number of partitions of `topic` as last seen in metadata.
    pub fn partitions(&self, topic: &str) -> Option<usize> {
        self.cluster.topic(topic).map(|t| t.leaders.len())
    }

    /// Produces `records`, retrying retriable failures; never panics and
    /// returns in bounded time (attempts x request timeout + backoff).
    pub async fn send(&mut self, records: &[OutRecord]) -> SendReport {
        let mut report = SendReport::default();
        if records.is_empty() {
            return report;
        }
        let mut topics: Vec<&str> = Vec::new();
        let mut topic_of = Vec::with_capacity(records.len());
        for r in records {
            let i = match topics.iter().position(|t| *t == r.topic.as_ref()) {
                Some(i) => i,
                None => {
                    topics.push(r.topic.as_ref());
                    topics.len() - 1
                }
            };
            topic_of.push(i);
        }
        let owned: Vec<String> = topics.iter().map(|t| (*t).to_owned()).collect();
        if topics.iter().any(|t| self.cluster.topic(t).is_none())
            && let Err(e) = self
                .cluster
                .refresh(&owned, self.config.create_topics)
                .await
        {
            report.last_error = Some(e);
        }

        // Assign partitions once; retries keep them so per-key order holds.
        let mut assigned: Vec<Option<i32>> = Vec::with_capacity(records.len());
        let rr = self.round_robin;
        self.round_robin = self.round_robin.wrapping_add(1);
        for (r, &t) in records.iter().zip(&topic_of) {
            let p = self.cluster.topic(topics[t]).and_then(|m| {
                let n = m.leaders.len() as u32;
                (n > 0).then(|| match &r.key {
                    Some(k) => partition_for_key(k, n) as i32,
                    None => (rr.wrapping_add(t as u32) % n) as i32,
                })
            });
            assigned.push(p);
        }
        let mut pending: Vec<usize> = Vec::with_capacity(records.len());
        for (i, p) in assigned.iter().enumerate() {
            if p.is_some() {
                pending.push(i);
            } else {
                report.failed += 1;
            }
        }
        if report.failed > 0 && report.last_error.is_none() {
            report.last_error = Some(KafkaError::Config(format!(
                "no metadata for topics {owned:?}"
            )));
        }

        let mut backoff = self.config.backoff;
        for attempt in 0..=self.config.retries {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.config.max_backoff);
                if let Err(e) = self
                    .cluster
                    .refresh(&owned, self.config.create_topics)
                    .await
                {
                    report.last_error = Some(e);
                    continue;
                }
            }
            let (retry, sent, failed, err) = self
                .attempt(records, &topics, &topic_of, &assigned, &pending)
                .await;
            report.sent += sent;
            report.failed += failed;
            if err.is_some() {
                report.last_error = err;
            }
            pending = retry;
        }
        report.failed += pending.len();
        report
    }

    /// One pass over `pending`; returns (to retry, sent, failed, last error).
    async fn attempt(
        &mut self,
        records: &[OutRecord],
        topics: &[&str],
        topic_of: &[usize],
        assigned: &[Option<i32>],
        pending: &[usize],
    ) -> (Vec<usize>, usize, usize, Option<KafkaError>) {
        let mut retry = Vec::new();
        let mut last_error = None;
        // leader -> (topic, partition) -> record indexes
        let mut by_leader: HashMap<i32, HashMap<(usize, i32), Vec<usize>>> = HashMap::new();
        for &i in pending {
            let (t, Some(p)) = (topic_of[i], assigned[i]) else {
                continue;
            };
            let leader = self
                .cluster
                .topic(topics[t])
                .and_then(|m| m.leaders.get(p as usize).copied())
                .filter(|l| *l >= 0 && self.cluster.broker_addr(*l).is_some());
            match leader {
                Some(l) => by_leader
                    .entry(l)
                    .or_default()
                    .entry((t, p))
                    .or_default()
                    .push(i),
                None => retry.push(i),
            }
        }
        let mut jobs = Vec::with_capacity(by_leader.len());
        for (leader, parts) in by_leader {
            let rounds = self.plan_rounds(records, parts);
            let all: Vec<usize> = rounds
                .iter()
                .flatten()
                .flat_map(|c| c.records.iter().copied())
                .collect();
            match self.cluster.take_conn(leader).await {
                Ok(conn) => jobs.push((leader, conn, rounds)),
                Err(e) => {
                    retry.extend(all);
                    last_error = Some(e);
                }
            }
        }
        let acks = self.config.acks;
        let timeout_ms = self.config.produce_timeout.as_millis() as i32;
        let futures = jobs.into_iter().map(|(leader, conn, rounds)| {
            produce_to(leader, conn, rounds, records, topics, acks, timeout_ms)
        });
        let mut sent = 0;
        let mut failed = 0;
        for (leader, conn, outcomes) in join_all(futures).await {
            match conn {
                Some(c) => self.cluster.put_conn(leader, c),
                None => self.cluster.reset(),
            }
            for (chunk, outcome) in outcomes {
                match outcome {
                    Ok(()) => sent += chunk.records.len(),
                    Err(e) if e.is_retriable() => {
                        retry.extend(chunk.records);
                        last_error = Some(e);
                    }
                    Err(e) => {
                        failed += chunk.records.len();
                        last_error = Some(e);
                    }
                }
            }
        }
        (retry, sent, failed, last_error)
    }

    /// Splits each partition's records into chunks of at most
    /// `max_batch_bytes`; round `n` carries the `n`th chunk of each partition.
    fn plan_rounds(
        &self,
        records: &[OutRecord],
        parts: HashMap<(usize, i32), Vec<usize>>,
    ) -> Vec<Vec<Chunk>> {
        let mut rounds: Vec<Vec<Chunk>> = Vec::new();
        for ((topic, partition), idxs) in parts {
            let mut round = 0;
            let mut bytes = 0;
            let mut current = Vec::new();
            for i in idxs {
                let r = &records[i];
                let size = r.wire_size();
                if !current.is_empty() && bytes + size > self.config.max_batch_bytes {
                    push_chunk(
                        &mut rounds,
                        round,
                        topic,
                        partition,
                        std::mem::take(&mut current),
                    );
                    round += 1;
                    bytes = 0;
                }
                bytes += size;
                current.push(i);
            }
            if !current.is_empty() {
                push_chunk(&mut rounds, round, topic, partition, current);
            }
        }
        rounds
    }
}

fn push_chunk(
    rounds: &mut Vec<Vec<Chunk>>,
    round: usize,
    topic: usize,
    partition: i32,
    records: Vec<usize>,
) {
    if rounds.len() <= round {
        rounds.resize_with(round + 1, Vec::new);
    }
    rounds[round].push(Chunk {
        topic,
        partition,
        records,
    });
}
