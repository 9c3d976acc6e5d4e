//! Fetching records and resolving start offsets.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest};
use kafka_protocol::records::RecordBatchDecoder;

use super::super::cluster::topic_name;
use super::super::config::ConsumerConfig;
use super::super::conn::Connection;
use super::super::error::{KafkaError, check};
use super::ConsumedRecord;

const FETCH_MAX: i16 = 12;
const LIST_OFFSETS_MAX: i16 = 7;
/// `ListOffsets` timestamp meaning "earliest".
const EARLIEST: i64 = -2;

/// Earliest available offset of each partition (all led by `conn`'s broker).
pub(crate) async fn earliest(
    conn: &mut Connection,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>, KafkaError> {
    let mut by_topic: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(*p)
                .with_current_leader_epoch(-1)
                .with_timestamp(EARLIEST),
        );
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = conn.request(&req, LIST_OFFSETS_MAX).await?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            check(p.error_code, || {
                format!(
                    "list offsets of {}/{}",
                    t.name.0.as_str(),
                    p.partition_index
                )
            })?;
            out.insert((t.name.0.to_string(), p.partition_index), p.offset.max(0));
        }
    }
    Ok(out)
}

/// Per-partition result of a fetch.
pub(crate) enum PartitionFetch {
    /// Records at or after the requested offset, the next offset to ask for,
    /// and the partition's high watermark (offset after its last record).
    Records(Vec<ConsumedRecord>, i64, i64),
    /// The partition answered with an error code.
    Error(KafkaError),
}

/// One fetch to one broker for `positions` (partition -> next offset).
pub(crate) async fn fetch(
    conn: &mut Connection,
    config: &ConsumerConfig,
    positions: &[((String, i32), i64)],
    topics: &mut BTreeMap<String, Arc<str>>,
) -> Result<Vec<((String, i32), PartitionFetch)>, KafkaError> {
    let mut by_topic: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for ((t, p), offset) in positions {
        by_topic.entry(t.as_str()).or_default().push(
            FetchPartition::default()
                .with_partition(*p)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(*offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(config.fetch_max_partition_bytes),
        );
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(1)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp: FetchResponse = conn.request(&req, FETCH_MAX).await?;
    check(resp.error_code, || "fetch".to_owned())?;
    let requested: BTreeMap<(String, i32), i64> = positions.iter().cloned().collect();
    let mut out = Vec::new();
    for t in resp.responses {
        let name = t.topic.0.to_string();
        let shared = topics
            .entry(name.clone())
            .or_insert_with(|| Arc::from(name.as_str()))
            .clone();
        for p in t.partitions {
            let key = (name.clone(), p.partition_index);
            let Some(&from) = requested.get(&key) else {
                continue;
            };
            if let Err(e) = check(p.error_code, || {
                format!("fetch {name}/{}", p.partition_index)
            }) {
                out.push((key, PartitionFetch::Error(e)));
                continue;
            }
            let result = match p.records {
                None => PartitionFetch::Records(Vec::new(), from, p.high_watermark),
                Some(raw) => decode(
                    raw,
                    &shared,
                    p.partition_index,
                    from,
                    p.high_watermark,
                    conn.addr(),
                ),
            };
            out.push((key, result));
        }
    }
    Ok(out)
}

/// Decodes the complete batches of `raw`; a truncated last batch (the fetch
/// hit its byte limit) is left for the next fetch.
fn decode(
    mut raw: Bytes,
    topic: &Arc<str>,
    partition: i32,
    from: i64,
    high_watermark: i64,
    addr: &str,
) -> PartitionFetch {
    let mut records = Vec::new();
    let mut next = from;
    loop {
        // Batch header: base offset (8) + batch length (4).
        if raw.remaining() < 12 {
            break;
        }
        let len = i32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let Ok(len) = usize::try_from(len) else {
            return protocol_error(addr, "negative record batch length");
        };
        if raw.remaining() < 12 + len {
            break;
        }
        let mut one = raw.split_to(12 + len);
        let set = match RecordBatchDecoder::decode(&mut one) {
            Ok(s) => s,
            Err(e) => {
                return protocol_error(addr, &format!("record batch of {topic}/{partition}: {e}"));
            }
        };
        for r in set.records {
            next = next.max(r.offset + 1);
            if r.offset < from || r.control {
                continue;
            }
            records.push(ConsumedRecord {
                topic: topic.clone(),
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    PartitionFetch::Records(records, next, high_watermark)
}

fn protocol_error(addr: &str, message: &str) -> PartitionFetch {
    PartitionFetch::Error(KafkaError::Protocol {
        addr: addr.to_owned(),
        message: message.to_owned(),
    })
}
