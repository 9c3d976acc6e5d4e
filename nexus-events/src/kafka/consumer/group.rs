//! Group membership: coordinator lookup, join/sync, commits, leave
//! (heartbeats are in [`super::heartbeat`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, FindCoordinatorRequest, GroupId,
    JoinGroupRequest, LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::super::cluster::{Cluster, topic_name};
use super::super::config::ConsumerConfig;
use super::super::conn::Connection;
use super::super::error::{KafkaError, check};
use super::assignor::{Assignment, assign};

const FIND_COORDINATOR_MAX: i16 = 3;
const JOIN_GROUP_MAX: i16 = 7;
const SYNC_GROUP_MAX: i16 = 5;
const LEAVE_GROUP_MAX: i16 = 4;
const OFFSET_COMMIT_MAX: i16 = 8;
const OFFSET_FETCH_MAX: i16 = 7;

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

/// Errors after which the member must rejoin the group.
pub(crate) fn needs_rejoin(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::Broker {
            error: ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::FencedInstanceId,
            ..
        }
    )
}

/// The member's place in the group.
#[derive(Debug, Default, Clone)]
pub(crate) struct Membership {
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    pub(crate) assignment: Vec<(String, i32)>,
}

/// Finds the group coordinator and connects to it.
pub(crate) async fn coordinator(
    cluster: &mut Cluster,
    group: &str,
) -> Result<(String, Connection), KafkaError> {
    let req = FindCoordinatorRequest::default()
        .with_key(s(group))
        .with_key_type(0);
    let resp = cluster
        .any_conn()
        .await?
        .request(&req, FIND_COORDINATOR_MAX)
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            cluster.reset();
            return Err(e);
        }
    };
    check(resp.error_code, || format!("find coordinator of {group}"))?;
    let addr = format!("{}:{}", resp.host.as_str(), resp.port);
    let conn = Connection::connect(&addr, cluster.options()).await?;
    Ok((addr, conn))
}

fn subscription(topics: &[String]) -> Result<Bytes, KafkaError> {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    sub.encode(&mut buf, 0)
        .map_err(|e| KafkaError::Config(e.to_string()))?;
    Ok(buf.freeze())
}

fn decode_subscription(mut raw: Bytes) -> Result<Vec<String>, String> {
    if raw.remaining() < 2 {
        return Err("subscription metadata too short".into());
    }
    let version = raw.get_i16().clamp(0, 3);
    let sub = ConsumerProtocolSubscription::decode(&mut raw, version).map_err(|e| e.to_string())?;
    Ok(sub.topics.iter().map(|t| t.to_string()).collect())
}

fn encode_assignment(topics: &BTreeMap<String, Vec<i32>>) -> Result<Bytes, KafkaError> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        topics
            .iter()
            .map(|(t, p)| {
                AssignedTopic::default()
                    .with_topic(topic_name(t))
                    .with_partitions(p.clone())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(0);
    a.encode(&mut buf, 0)
        .map_err(|e| KafkaError::Config(e.to_string()))?;
    Ok(buf.freeze())
}

fn decode_assignment(mut raw: Bytes, addr: &str) -> Result<Vec<(String, i32)>, KafkaError> {
    if raw.remaining() < 2 {
        return Ok(Vec::new()); // no partitions for this member
    }
    let version = raw.get_i16().clamp(0, 3);
    let a = ConsumerProtocolAssignment::decode(&mut raw, version).map_err(|e| {
        KafkaError::Protocol {
            addr: addr.to_owned(),
            message: format!("assignment: {e}"),
        }
    })?;
    let mut out = Vec::new();
    for t in a.assigned_partitions {
        for p in t.partitions {
            out.push((t.topic.0.to_string(), p));
        }
    }
    out.sort();
    Ok(out)
}

/// JoinGroup (twice when the broker requires a member id) then SyncGroup.
pub(crate) async fn join(
    cluster: &mut Cluster,
    conn: &mut Connection,
    config: &ConsumerConfig,
    member_id: &str,
) -> Result<Membership, KafkaError> {
    let metadata = subscription(&config.topics)?;
    let wait = config.rebalance_timeout + config.client.request_timeout;
    let mut member = member_id.to_owned();
    let resp = loop {
        let req = JoinGroupRequest::default()
            .with_group_id(GroupId(s(&config.group_id)))
            .with_session_timeout_ms(ms(config.session_timeout))
            .with_rebalance_timeout_ms(ms(config.rebalance_timeout))
            .with_member_id(s(&member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(s(config.assignor.name()))
                    .with_metadata(metadata.clone()),
            ]);
        let resp = conn.request_within(&req, JOIN_GROUP_MAX, wait).await?;
        match ResponseError::try_from_code(resp.error_code) {
            Some(ResponseError::MemberIdRequired) if member.is_empty() => {
                member = resp.member_id.to_string();
            }
            _ => {
                check(resp.error_code, || {
                    format!("join group {}", config.group_id)
                })?;
                break resp;
            }
        }
    };
    let member = resp.member_id.to_string();
    let generation = resp.generation_id;
    let mut assignments = Vec::new();
    if resp.leader == resp.member_id {
        let mut members = BTreeMap::new();
        for m in &resp.members {
            let topics = decode_subscription(m.metadata.clone()).map_err(|message| {
                KafkaError::Protocol {
                    addr: conn.addr().to_owned(),
                    message,
                }
            })?;
            members.insert(m.member_id.to_string(), topics);
        }
        let mut all: Vec<String> = members.values().flatten().cloned().collect();
        all.sort();
        all.dedup();
        cluster.refresh(&all, None).await?;
        let partitions: BTreeMap<String, usize> = all
            .iter()
            .filter_map(|t| cluster.topic(t).map(|m| (t.clone(), m.leaders.len())))
            .collect();
        let plan: Assignment = assign(config.assignor, &members, &partitions);
        for (m, topics) in &plan {
            assignments.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(s(m))
                    .with_assignment(encode_assignment(topics)?),
            );
        }
        tracing::info!(group = %config.group_id, generation, members = members.len(), "computed group assignment as leader");
    }
    let mut req = SyncGroupRequest::default()
        .with_group_id(GroupId(s(&config.group_id)))
        .with_generation_id(generation)
        .with_member_id(s(&member))
        .with_assignments(assignments);
    if conn.version::<SyncGroupRequest>(SYNC_GROUP_MAX)? >= 5 {
        req = req
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s(config.assignor.name())));
    }
    let resp = conn.request_within(&req, SYNC_GROUP_MAX, wait).await?;
    check(resp.error_code, || {
        format!("sync group {}", config.group_id)
    })?;
    let assignment = decode_assignment(resp.assignment, conn.addr())?;
    tracing::info!(group = %config.group_id, generation, member = %member, ?assignment, "joined consumer group");
    Ok(Membership {
        member_id: member,
        generation,
        assignment,
    })
}

/// Committed offsets of `partitions`; `None` where the group has none.
pub(crate) async fn fetch_offsets(
    conn: &mut Connection,
    group: &str,
    partitions: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), Option<i64>>, KafkaError> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_topics(Some(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps)
                })
                .collect(),
        ));
    let resp = conn.request(&req, OFFSET_FETCH_MAX).await?;
    check(resp.error_code, || format!("offset fetch of {group}"))?;
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            check(p.error_code, || {
                format!(
                    "offset fetch of {}/{}",
                    t.name.0.as_str(),
                    p.partition_index
                )
            })?;
            let committed = (p.committed_offset >= 0).then_some(p.committed_offset);
            out.insert((t.name.0.to_string(), p.partition_index), committed);
        }
    }
    Ok(out)
}

/// Commits `offsets` (next offset to read, per partition).
pub(crate) async fn commit(
    conn: &mut Connection,
    group: &str,
    m: &Membership,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<(), KafkaError> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), o) in offsets {
        by_topic.entry(t.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(m.generation)
        .with_member_id(s(&m.member_id))
        .with_retention_time_ms(-1)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let resp = conn.request(&req, OFFSET_COMMIT_MAX).await?;
    for t in resp.topics {
        for p in t.partitions {
            check(p.error_code, || {
                format!("commit {}/{}", t.name.0.as_str(), p.partition_index)
            })?;
        }
    }
    Ok(())
}

/// LeaveGroup, best effort.
pub(crate) async fn leave(
    conn: &mut Connection,
    group: &str,
    member_id: &str,
) -> Result<(), KafkaError> {
    // v0-2 name one member; v3+ take a list (batch leave).
    let version = conn.version::<LeaveGroupRequest>(LEAVE_GROUP_MAX)?;
    let req = LeaveGroupRequest::default().with_group_id(GroupId(s(group)));
    let req = if version >= 3 {
        req.with_members(vec![MemberIdentity::default().with_member_id(s(member_id))])
    } else {
        req.with_member_id(s(member_id))
    };
    let resp = conn.request(&req, version).await?;
    check(resp.error_code, || format!("leave group {group}"))
}
