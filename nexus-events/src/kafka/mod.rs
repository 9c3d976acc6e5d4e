//! A small Kafka client on the `kafka-protocol` crate: what the events need
//! and nothing more.
//!
//! * [`Producer`]: bootstrap, `ApiVersions` negotiation, `Metadata` (refreshed
//!   on errors), optional `CreateTopics`, record batches v2 without
//!   compression, Java-compatible murmur2 key partitioning ([`partition_for_key`]),
//!   configurable [`Acks`], retries with exponential backoff, reconnects. One
//!   request in flight per broker; batches are formed upstream by the
//!   [`Emitter`](crate::Emitter) (linger and `max_batch`) and split by
//!   `max_batch_bytes` per partition.
//! * [`GroupConsumer`]: `FindCoordinator`, `JoinGroup`/`SyncGroup` with the
//!   range or round-robin assignor computed by the elected leader, a heartbeat
//!   task, `OffsetFetch`/`OffsetCommit`, `ListOffsets` (earliest) and `Fetch`,
//!   `LeaveGroup` on close. Delivery is at-least-once: commit after handling.
//!
//! Every network wait is bounded by the configured timeouts; frames larger
//! than `max_frame_bytes` are refused before allocation.

mod cluster;
mod config;
mod conn;
mod consumer;
mod error;
mod murmur2;
mod producer;
mod sink;

pub use config::{Acks, Assignor, ClientConfig, ConsumerConfig, ProducerConfig, TopicSpec};
pub use consumer::{ConsumedRecord, GroupConsumer};
pub use error::KafkaError;
pub use murmur2::{murmur2, partition_for_key};
pub use producer::{OutRecord, Producer, SendReport};
pub use sink::KafkaSink;
