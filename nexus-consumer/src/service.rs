//! The consumer service loop: poll, route, act, commit.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use nexus_events::kafka::{ConsumerConfig, GroupConsumer, KafkaError};
use nexus_events::{ALL_TOPICS, Event};

use crate::config::{ConfigError, ServiceConfig};
use crate::handlers::{Handlers, Stats};

/// Pause after a failed poll, join or handler before trying again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka client refused its configuration.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The Redis URL is invalid.
    #[error("redis: {0}")]
    Redis(#[from] crate::blocklist::BlocklistError),
    /// The admin server could not listen.
    #[error("admin server cannot listen on {addr}: {source}")]
    Admin {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The consumer service: joins the group, routes each topic to its handler,
/// commits after handling (at-least-once).
#[derive(Debug)]
pub struct ConsumerService {
    config: ServiceConfig,
    stats: Arc<Stats>,
}

impl ConsumerService {
    /// Validates `config`.
    pub fn new(config: ServiceConfig) -> Result<Self, ServiceError> {
        config.validate()?;
        Ok(Self {
            config,
            stats: Arc::new(Stats::default()),
        })
    }

    /// Live counters (clone the `Arc` before calling [`ConsumerService::run`]).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    fn kafka_config(&self) -> ConsumerConfig {
        let c = &self.config;
        let mut k = ConsumerConfig::new(&c.kafka_bootstrap, &c.group_id, &ALL_TOPICS);
        k.client.client_id = "nexus-consumer".to_owned();
        k.session_timeout = c.session_timeout();
        k.rebalance_timeout = c.session_timeout();
        k.heartbeat_interval = (c.session_timeout() / 6).max(Duration::from_millis(100));
        k
    }

    /// Runs until `shutdown` resolves, then leaves the group. Broker or Redis
    /// outages are logged and retried, never fatal.
    ///
    /// With [`ServiceConfig::admin`] set, binds the admin server first (a
    /// taken port is an [`ServiceError::Admin`]) and stops it with the rest.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        let mut handlers = Handlers::new(&self.config, self.stats.clone())?;
        let kafka = self.kafka_config();
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        #[cfg(feature = "admin")]
        let admin = match self.config.admin {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServiceError::Admin { addr, source })?;
                tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "consumer admin listening (/metrics, /stats, /healthz)");
                let stats = self.stats.clone();
                Some(tokio::spawn(crate::admin::serve(listener, stats, async {
                    let _ = admin_stopped.await;
                })))
            }
            None => None,
        };
        // `validate` refused an admin address without the feature.
        #[cfg(not(feature = "admin"))]
        let admin: Option<tokio::task::JoinHandle<std::io::Result<()>>> = {
            drop(admin_stopped);
            None
        };
        let result = self.consume(&mut handlers, kafka, shutdown).await;
        let _ = admin_stop.send(());
        if let Some(task) = admin {
            let _ = task.await;
        }
        result
    }

    async fn consume(
        &self,
        handlers: &mut Handlers,
        kafka: ConsumerConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServiceError> {
        tokio::pin!(shutdown);
        let mut consumer = loop {
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                joined = GroupConsumer::join(kafka.clone()) => match joined {
                    Ok(c) => break c,
                    Err(KafkaError::Config(m)) => return Err(KafkaError::Config(m).into()),
                    Err(e) => {
                        tracing::warn!(error = %e, "joining the consumer group failed; retrying");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                },
            }
        };
        tracing::info!(group = %self.config.group_id, assignment = ?consumer.assignment(), "consumer service running");
        loop {
            let polled = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = consumer.poll() => r,
            };
            let batch = match polled {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "poll failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            let handled = self.handle_batch(handlers, &batch).await;
            if handled > 0 {
                match consumer.commit(&batch[..handled]).await {
                    Ok(()) => {
                        self.stats
                            .commits
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "commit failed; records may be redelivered")
                    }
                }
            }
            if handled < batch.len() {
                // Rewind every partition to its first unhandled record and retry later.
                let mut first: BTreeMap<(&str, i32), i64> = BTreeMap::new();
                for r in &batch[handled..] {
                    first.entry((&r.topic, r.partition)).or_insert(r.offset);
                }
                for ((t, p), o) in first {
                    consumer.seek(t, p, o);
                }
            }
            // After any rewind: records read but not handled count as lag.
            self.stats.set_lag(consumer.lag());
            if handled < batch.len() {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        if let Err(e) = consumer.close().await {
            tracing::warn!(error = %e, "leaving the consumer group failed; partitions move after the session timeout");
        }
        Ok(())
    }

    /// Handles records in order; returns how many were handled (a handler
    /// failure stops the batch there).
    async fn handle_batch(
        &self,
        handlers: &mut Handlers,
        batch: &[nexus_events::kafka::ConsumedRecord],
    ) -> usize {
        for (i, r) in batch.iter().enumerate() {
            Stats::inc(&self.stats.records);
            let event = match r.value.as_deref().map(|v| Event::from_record(&r.topic, v)) {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    Stats::inc(&self.stats.malformed);
                    tracing::warn!(topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "skipping malformed event");
                    continue;
                }
                None => {
                    Stats::inc(&self.stats.malformed);
                    continue;
                }
            };
            if let Err(e) = handlers.handle_record(&event, r).await {
                tracing::warn!(error = %e, "handler failed; will retry from this record");
                return i;
            }
        }
        batch.len()
    }
}
