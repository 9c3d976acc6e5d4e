//! Typed, validated client configuration.

use std::num::NonZeroU32;
use std::time::Duration;

use super::conn::ConnOptions;
use super::error::KafkaError;

/// Producer acknowledgement level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget: no response is awaited (`acks=0`).
    None,
    /// The partition leader has written the batch (`acks=1`).
    #[default]
    Leader,
    /// All in-sync replicas have the batch (`acks=-1`).
    All,
}

impl Acks {
    pub(crate) fn wire(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Leader => 1,
            Self::All => -1,
        }
    }
}

/// Settings common to producer and consumer connections.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Bootstrap brokers, `host:port` each; tried in order.
    pub bootstrap: Vec<String>,
    /// Sent as the Kafka `client.id`.
    pub client_id: String,
    /// Bound on a TCP connect.
    pub connect_timeout: Duration,
    /// Bound on any request/response round trip (a fetch adds its max wait).
    pub request_timeout: Duration,
    /// Largest response frame accepted from a broker.
    pub max_frame_bytes: usize,
}

impl ClientConfig {
    /// Defaults for the given bootstrap list (`host:port,host:port`).
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: "nexus".to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_frame_bytes: 64 * 1024 * 1024,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), KafkaError> {
        if self.bootstrap.is_empty() {
            return Err(KafkaError::Config("`bootstrap` lists no broker".into()));
        }
        if let Some(bad) = self.bootstrap.iter().find(|b| b.rsplit_once(':').is_none()) {
            return Err(KafkaError::Config(format!(
                "`bootstrap` entry {bad:?} is not host:port"
            )));
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err(KafkaError::Config(
                "`connect_timeout` and `request_timeout` must be positive".into(),
            ));
        }
        if self.max_frame_bytes < 1024 {
            return Err(KafkaError::Config(
                "`max_frame_bytes` must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn conn_options(&self) -> ConnOptions {
        ConnOptions {
            client_id: self.client_id.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            max_frame_bytes: self.max_frame_bytes,
        }
    }
}

/// Topic auto-creation through `CreateTopics`.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    /// Partitions of created topics.
    pub partitions: NonZeroU32,
    /// Replication factor of created topics.
    pub replication: i16,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            partitions: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            replication: 1,
        }
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Acknowledgement level.
    pub acks: Acks,
    /// Broker-side wait for replication (`timeout_ms` of Produce).
    pub produce_timeout: Duration,
    /// Attempts after the first for retriable failures (per batch).
    pub retries: u32,
    /// Backoff before the first retry; doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    /// Upper bound of the retry backoff.
    pub max_backoff: Duration,
    /// Largest record batch for one partition in one request, in bytes
    /// (bigger batches are split over several requests).
    pub max_batch_bytes: usize,
    /// Create missing topics with this spec; `None` relies on the broker.
    pub create_topics: Option<TopicSpec>,
}

impl ProducerConfig {
    /// Defaults for the given bootstrap list.
    pub fn new(bootstrap: &str) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            acks: Acks::Leader,
            produce_timeout: Duration::from_secs(5),
            retries: 3,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            max_batch_bytes: 900 * 1024,
            create_topics: Some(TopicSpec::default()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), KafkaError> {
        self.client.validate()?;
        if self.max_batch_bytes < 1024 {
            return Err(KafkaError::Config(
                "`max_batch_bytes` must be at least 1024".into(),
            ));
        }
        if self.produce_timeout.as_millis() > i32::MAX as u128 {
            return Err(KafkaError::Config("`produce_timeout` too large".into()));
        }
        Ok(())
    }
}

/// Group consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Consumer group id.
    pub group_id: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// The coordinator evicts a member silent for this long.
    pub session_timeout: Duration,
    /// How long the coordinator waits for members to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// Interval between heartbeats (well under `session_timeout`).
    pub heartbeat_interval: Duration,
    /// Longest a fetch waits on the broker for data.
    pub fetch_max_wait: Duration,
    /// Per-partition byte limit of a fetch.
    pub fetch_max_partition_bytes: i32,
    /// Whole-response byte limit of a fetch.
    pub fetch_max_bytes: i32,
    /// Partition assignment strategy the leader uses.
    pub assignor: Assignor,
    /// Create missing topics with this spec before joining.
    pub create_topics: Option<TopicSpec>,
}

/// Partition assignment strategies (the leader computes the assignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous partition ranges per member.
    #[default]
    Range,
    /// Kafka's `roundrobin`: all partitions dealt out in turn.
    RoundRobin,
}

impl Assignor {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Range => "range",
            Self::RoundRobin => "roundrobin",
        }
    }
}

impl ConsumerConfig {
    /// Defaults for a group reading `topics` from the given bootstrap list.
    pub fn new(bootstrap: &str, group_id: &str, topics: &[&str]) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            fetch_max_wait: Duration::from_millis(100),
            fetch_max_partition_bytes: 1024 * 1024,
            fetch_max_bytes: 8 * 1024 * 1024,
            assignor: Assignor::Range,
            create_topics: Some(TopicSpec::default()),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), KafkaError> {
        self.client.validate()?;
        if self.group_id.is_empty() {
            return Err(KafkaError::Config("`group_id` is empty".into()));
        }
        if self.topics.is_empty() {
            return Err(KafkaError::Config("`topics` is empty".into()));
        }
        if self.heartbeat_interval >= self.session_timeout {
            return Err(KafkaError::Config(
                "`heartbeat_interval` must be shorter than `session_timeout`".into(),
            ));
        }
        if self.fetch_max_wait >= self.client.request_timeout {
            return Err(KafkaError::Config(
                "`fetch_max_wait` must be shorter than `request_timeout`".into(),
            ));
        }
        if self.fetch_max_partition_bytes <= 0 || self.fetch_max_bytes <= 0 {
            return Err(KafkaError::Config(
                "fetch byte limits must be positive".into(),
            ));
        }
        for d in [self.session_timeout, self.rebalance_timeout] {
            if d.as_millis() > i32::MAX as u128 || d.is_zero() {
                return Err(KafkaError::Config(
                    "`session_timeout`/`rebalance_timeout` out of range".into(),
                ));
            }
        }
        Ok(())
    }
}
