//! Building Produce requests (record batches v2) and reading their answers.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::super::cluster::topic_name;
use super::super::config::Acks;
use super::super::conn::Connection;
use super::super::error::KafkaError;
use super::{Chunk, OutRecord};

const PRODUCE_MAX: i16 = 9;
/// Per-record framing overhead used when sizing batches (varints, attributes).
pub(super) const RECORD_OVERHEAD: usize = 24;

pub(super) type Outcome = (Chunk, Result<(), KafkaError>);

/// Sends every round to one leader, in order. Returns the connection if it is
/// still usable.
pub(super) async fn produce_to(
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
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (StrBytes::from_string(k.clone()), Some(v.clone())))
                    .collect(),
            });
        }
        let mut buf = BytesMut::with_capacity(
            batch
                .iter()
                .map(|r| {
                    r.value.as_ref().map_or(0, Bytes::len)
                        + r.headers
                            .iter()
                            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                            .sum::<usize>()
                        + RECORD_OVERHEAD
                })
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
                Some(&code) => super::super::error::check(code, || {
                    format!("produce to {topic}/{}", c.partition)
                }),
            };
            (c, res)
        })
        .collect()
}
