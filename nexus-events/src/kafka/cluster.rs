//! Cluster view: brokers, partition leaders, and one connection per broker.
//!
//! Bounds: one connection per broker id plus one bootstrap connection;
//! metadata only for the topics this client asked about.

use std::collections::HashMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::config::{ClientConfig, TopicSpec};
use super::conn::{ConnOptions, Connection};
use super::error::KafkaError;

/// Highest API versions this client speaks (the crate supports more, but
/// later versions switch to topic ids).
pub(crate) const METADATA_MAX: i16 = 12;
const CREATE_TOPICS_MAX: i16 = 7;

#[derive(Debug, Clone)]
pub(crate) struct TopicMeta {
    /// Leader broker id per partition index (`-1` when leaderless).
    pub(crate) leaders: Vec<i32>,
}

#[derive(Debug)]
pub(crate) struct Cluster {
    bootstrap: Vec<String>,
    opts: ConnOptions,
    brokers: HashMap<i32, String>,
    conns: HashMap<i32, Connection>,
    /// Used for metadata before broker ids are known.
    any: Option<Connection>,
    topics: HashMap<String, TopicMeta>,
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_owned()))
}

impl Cluster {
    pub(crate) fn new(config: &ClientConfig) -> Self {
        Self {
            bootstrap: config.bootstrap.clone(),
            opts: config.conn_options(),
            brokers: HashMap::new(),
            conns: HashMap::new(),
            any: None,
            topics: HashMap::new(),
        }
    }

    pub(crate) fn options(&self) -> &ConnOptions {
        &self.opts
    }

    pub(crate) fn topic(&self, name: &str) -> Option<&TopicMeta> {
        self.topics.get(name)
    }

    pub(crate) fn broker_addr(&self, id: i32) -> Option<&str> {
        self.brokers.get(&id).map(String::as_str)
    }

    /// Drops every connection and the cached topic metadata, after a failure
    /// that may mean the broker moved or restarted (a restarted broker may
    /// have lost topics, which the next send then re-creates).
    pub(crate) fn reset(&mut self) {
        self.conns.clear();
        self.any = None;
        self.topics.clear();
    }

    /// A connection to any broker: a cached one, else the bootstrap list in order.
    pub(crate) async fn any_conn(&mut self) -> Result<&mut Connection, KafkaError> {
        if self.any.is_none() {
            let mut last = String::from("no broker tried");
            let candidates: Vec<String> = self
                .brokers
                .values()
                .cloned()
                .chain(self.bootstrap.iter().cloned())
                .collect();
            for addr in candidates {
                match Connection::connect(&addr, &self.opts).await {
                    Ok(c) => {
                        self.any = Some(c);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if self.any.is_none() {
                return Err(KafkaError::NoBroker { last });
            }
        }
        self.any.as_mut().ok_or_else(|| KafkaError::NoBroker {
            last: String::new(),
        })
    }

    /// Takes the connection to broker `id` out of the pool (connecting if
    /// needed); give it back with [`Cluster::put_conn`] if still healthy.
    pub(crate) async fn take_conn(&mut self, id: i32) -> Result<Connection, KafkaError> {
        if let Some(c) = self.conns.remove(&id) {
            return Ok(c);
        }
        let addr = self
            .brokers
            .get(&id)
            .cloned()
            .ok_or_else(|| KafkaError::Config(format!("unknown broker id {id}")))?;
        Connection::connect(&addr, &self.opts).await
    }

    pub(crate) fn put_conn(&mut self, id: i32, conn: Connection) {
        self.conns.insert(id, conn);
    }

    /// Refreshes metadata for `topics`; creates the missing ones when `create`
    /// is set. Topics still unknown afterwards are absent from the view.
    pub(crate) async fn refresh(
        &mut self,
        topics: &[String],
        create: Option<TopicSpec>,
    ) -> Result<(), KafkaError> {
        let missing = match self.fetch_metadata(topics).await {
            Ok(m) => m,
            Err(e) => {
                self.any = None;
                return Err(e);
            }
        };
        if let (Some(spec), false) = (create, missing.is_empty()) {
            self.create(&missing, spec).await?;
            self.fetch_metadata(topics).await?;
        }
        Ok(())
    }

    /// Returns the topics the broker does not know.
    async fn fetch_metadata(&mut self, topics: &[String]) -> Result<Vec<String>, KafkaError> {
        let req = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let conn = self.any_conn().await?;
        let resp = match conn.request(&req, METADATA_MAX).await {
            Ok(r) => r,
            Err(e) => {
                self.any = None;
                return Err(e);
            }
        };
        let mut brokers = HashMap::with_capacity(resp.brokers.len());
        for b in &resp.brokers {
            brokers.insert(b.node_id.0, format!("{}:{}", b.host.as_str(), b.port));
        }
        // Connections to brokers whose address changed are stale.
        self.conns
            .retain(|id, c| brokers.get(id).is_some_and(|a| a == c.addr()));
        self.brokers = brokers;
        let mut missing = Vec::new();
        for t in resp.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            match ResponseError::try_from_code(t.error_code) {
                None => {}
                Some(ResponseError::UnknownTopicOrPartition) => {
                    self.topics.remove(&name);
                    missing.push(name);
                    continue;
                }
                Some(error) => {
                    self.topics.remove(&name);
                    if !error.is_retriable() {
                        return Err(KafkaError::broker(format!("metadata of {name}"), error));
                    }
                    continue;
                }
            }
            // Partitions are numbered 0..n; sizing by the list (not by the
            // highest index a peer sent) keeps the allocation bounded by the
            // frame. An index outside 0..n is ignored.
            let mut leaders = vec![-1; t.partitions.len()];
            for p in &t.partitions {
                if let Some(slot) = usize::try_from(p.partition_index)
                    .ok()
                    .and_then(|i| leaders.get_mut(i))
                {
                    *slot = p.leader_id.0;
                }
            }
            self.topics.insert(name, TopicMeta { leaders });
        }
        Ok(missing)
    }

    async fn create(&mut self, topics: &[String], spec: TopicSpec) -> Result<(), KafkaError> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(self.opts.request_timeout.as_millis().min(i32::MAX as u128) as i32)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(t))
                            .with_num_partitions(spec.partitions.get().min(i32::MAX as u32) as i32)
                            .with_replication_factor(spec.replication)
                    })
                    .collect(),
            );
        // CreateTopics must reach the controller; with one broker (or a
        // forwarding cluster) any broker will do.
        let controller = self.any_conn().await?;
        let resp = controller.request(&req, CREATE_TOPICS_MAX).await?;
        for t in resp.topics {
            match ResponseError::try_from_code(t.error_code) {
                None | Some(ResponseError::TopicAlreadyExists) => {
                    tracing::info!(topic = t.name.0.as_str(), "kafka topic ready");
                }
                Some(error) => {
                    return Err(KafkaError::broker(
                        format!("create topic {}", t.name.0.as_str()),
                        error,
                    ));
                }
            }
        }
        Ok(())
    }
}
