//! Batching Kafka producer: keyed murmur2 partitioning, record batches v2,
//! per-leader requests, retries with backoff, metadata refresh and reconnects.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use kafka_protocol::ResponseError;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::cluster::{Cluster, topic_name};
use super::config::{Acks, ProducerConfig};
use super::conn::Connection;
use super::error::KafkaError;
use super::murmur2::partition_for_key;

const PRODUCE_MAX: i16 = 9;
/// Per-record framing overhead used when sizing batches (varints, attributes).
const RECORD_OVERHEAD: usize = 24;

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
}

impl OutRecord {
    /// A record stamped with the current time.
    pub fn new(topic: impl Into<Cow<'static, str>>, key: Option<Bytes>, value: Bytes) -> Self {
        Self {
            topic: topic.into(),
            key,
            value,
            timestamp_ms: now_ms(),
        }
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
        if topics.iter().any(|t| self.cluster.topic(t).is_none()) {
            if let Err(e) = self
                .cluster
                .refresh(&owned, self.config.create_topics)
                .await
            {
                report.last_error = Some(e);
            }
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
                let size = r.value.len() + r.key.as_ref().map_or(0, Bytes::len) + RECORD_OVERHEAD;
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

type Outcome = (Chunk, Result<(), KafkaError>);

/// Sends every round to one leader, in order. Returns the connection if it is
/// still usable.
async fn produce_to(
    leader: i32,
    mut conn: Connection,
    rounds: Vec<Vec<Chunk>>,
    records: &[OutRecord],
    topics: &[&str],
    acks: Acks,
    timeout_ms: i32,
) -> (i32, Option<Connection>, Vec<Outcome>) {
    let mut outcomes = Vec::new();
    let mut healthy = true;
    for round in rounds {
        if !healthy {
            let e = || KafkaError::Io {
                addr: conn.addr().to_owned(),
                source: std::io::Error::other("connection failed earlier in this flush"),
            };
            outcomes.extend(round.into_iter().map(|c| (c, Err(e()))));
            continue;
        }
        let req = match build_request(&round, records, topics, acks, timeout_ms) {
            Ok(r) => r,
            Err(message) => {
                let addr = conn.addr().to_owned();
                outcomes.extend(round.into_iter().map(|c| {
                    (
                        c,
                        Err(KafkaError::Protocol {
                            addr: addr.clone(),
                            message: message.clone(),
                        }),
                    )
                }));
                continue;
            }
        };
        if acks == Acks::None {
            let res = conn.send_only(&req, PRODUCE_MAX).await;
            if let Err(e) = &res {
                healthy = !e.poisons_connection();
            }
            let shared = res.err().map(|e| e.to_string());
            outcomes.extend(round.into_iter().map(|c| {
                let r = match &shared {
                    None => Ok(()),
                    Some(m) => Err(KafkaError::Io {
                        addr: conn.addr().to_owned(),
                        source: std::io::Error::other(m.clone()),
                    }),
                };
                (c, r)
            }));
            continue;
        }
        match conn.request(&req, PRODUCE_MAX).await {
            Ok(resp) => outcomes.extend(map_response(round, &resp, topics)),
            Err(e) => {
                healthy = !e.poisons_connection();
                let msg = e.to_string();
                let retriable = e.is_retriable();
                let addr = conn.addr().to_owned();
                outcomes.extend(round.into_iter().map(|c| {
                    let err = if retriable {
                        KafkaError::Io {
                            addr: addr.clone(),
                            source: std::io::Error::other(msg.clone()),
                        }
                    } else {
                        KafkaError::Protocol {
                            addr: addr.clone(),
                            message: msg.clone(),
                        }
                    };
                    (c, Err(err))
                }));
            }
        }
    }
    (leader, healthy.then_some(conn), outcomes)
}

fn build_request(
    round: &[Chunk],
    records: &[OutRecord],
    topics: &[&str],
    acks: Acks,
    timeout_ms: i32,
) -> Result<ProduceRequest, String> {
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let mut by_topic: Vec<(usize, Vec<PartitionProduceData>)> = Vec::new();
    let mut batch: Vec<Record> = Vec::new();
    for chunk in round {
        batch.clear();
        for (n, &i) in chunk.records.iter().enumerate() {
            let r = &records[i];
            batch.push(Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: n as i64,
                // The encoder groups records whose `offset - sequence` is equal
                // into one batch and derives the base sequence from the first:
                // `sequence = offset - 1` yields one batch with base sequence -1
                // (no idempotence), as the protocol expects.
                sequence: n as i32 - 1,
                timestamp: r.timestamp_ms,
                key: r.key.clone(),
                value: Some(r.value.clone()),
                headers: IndexMap::new(),
            });
        }
        let mut buf = BytesMut::with_capacity(
            batch
                .iter()
                .map(|r| r.value.as_ref().map_or(0, Bytes::len) + RECORD_OVERHEAD)
                .sum::<usize>()
                + 64,
        );
        RecordBatchEncoder::encode(&mut buf, batch.iter(), &options).map_err(|e| e.to_string())?;
        let data = PartitionProduceData::default()
            .with_index(chunk.partition)
            .with_records(Some(buf.freeze()));
        match by_topic.iter_mut().find(|(t, _)| *t == chunk.topic) {
            Some((_, parts)) => parts.push(data),
            None => by_topic.push((chunk.topic, vec![data])),
        }
    }
    Ok(ProduceRequest::default()
        .with_acks(acks.wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(
            by_topic
                .into_iter()
                .map(|(t, parts)| {
                    TopicProduceData::default()
                        .with_name(topic_name(topics[t]))
                        .with_partition_data(parts)
                })
                .collect(),
        ))
}

fn map_response(round: Vec<Chunk>, resp: &ProduceResponse, topics: &[&str]) -> Vec<Outcome> {
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for t in &resp.responses {
        for p in &t.partition_responses {
            codes.insert((t.name.0.as_str(), p.index), p.error_code);
        }
    }
    round
        .into_iter()
        .map(|c| {
            let topic = topics[c.topic];
            let res = match codes.get(&(topic, c.partition)) {
                None => Err(KafkaError::broker(
                    format!("produce to {topic}/{}", c.partition),
                    ResponseError::UnknownServerError,
                )),
                Some(&code) => {
                    super::error::check(code, || format!("produce to {topic}/{}", c.partition))
                }
            };
            (c, res)
        })
        .collect()
}

/// How long [`Producer::send`] may take at most, for callers that bound it.
pub fn worst_case_send(config: &ProducerConfig) -> Duration {
    let per_attempt = config.client.connect_timeout + config.client.request_timeout * 2;
    let backoff = config.max_backoff * config.retries;
    per_attempt * (config.retries + 1) + backoff
}
