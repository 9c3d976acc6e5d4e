//! The accept loop and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Shared};
use crate::config::ProxyConfig;
use crate::error::ServeError;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::policy::metrics::MechanismMetrics;
use crate::upstream::Pool;

/// Sent to a client over the connection limit before closing it.
const MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";

/// A Redis proxy: build from a [`ProxyConfig`], then [`serve`](Self::serve) a
/// listener until a shutdown future resolves.
#[derive(Debug)]
pub struct Proxy {
    config: Arc<ProxyConfig>,
    metrics: Arc<Metrics>,
    mechanisms: Arc<MechanismMetrics>,
}

impl Proxy {
    /// Creates a proxy (nothing is started or connected yet).
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            mechanisms: Arc::new(MechanismMetrics::default()),
        }
    }

    /// This proxy's metrics registry (live: read it while the proxy runs).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The counters of the cache mechanisms (collapsed calls, hot keys, TTL
    /// extensions, invalidations, policy reloads); live while the proxy runs.
    pub fn mechanism_metrics(&self) -> Arc<MechanismMetrics> {
        Arc::clone(&self.mechanisms)
    }

    /// The configuration.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Binds `config.listen` (a convenience around [`serve`](Self::serve)).
    pub async fn bind(&self) -> Result<TcpListener, ServeError> {
        let addr = self.config.listen;
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })
    }

    /// Serves clients from `listener` until `shutdown` resolves, then stops
    /// accepting, lets connected clients receive the replies to commands already
    /// read (bounded by `shutdown_grace`), and returns.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let pool = Pool::spawn(&self.config, &self.metrics);
        let live = match &self.config.policy {
            None => None,
            Some(source) => Some(Arc::new(
                Live::start(source, pool.clone(), Arc::clone(&self.mechanisms))
                    .await?
                    .with_near(&self.config),
            )),
        };
        let shared = Arc::new(Shared {
            live,
            limits: self.config.client_limits(),
            client_auth: self.config.effective_client_auth().cloned(),
            pinned: Arc::new(Semaphore::new(self.config.max_pinned.get())),
            config: Arc::clone(&self.config),
            pool,
            metrics: Arc::clone(&self.metrics),
        });
        let clients = Arc::new(Semaphore::new(self.config.max_clients.get()));
        let token = CancellationToken::new();
        // Bounded by `max_clients`: a task is only spawned with a permit.
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => match Arc::clone(&clients).try_acquire_owned() {
                        Ok(permit) => {
                            let (shared, token) = (Arc::clone(&shared), token.child_token());
                            tasks.spawn(async move {
                                client::serve(stream, shared, token).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            self.metrics.rejected_connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            // Best effort, never waits: the socket buffer of a fresh
                            // connection always has room for one line.
                            let _ = stream.try_write(MAX_CLIENTS);
                        }
                    },
                    Err(e) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        drop(listener);
        token.cancel();
        let drained = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                remaining = tasks.len(),
                "shutdown grace elapsed; closing remaining clients"
            );
            tasks.shutdown().await;
        }
        Ok(())
    }
}
