//! The accept loop, the admin server's start, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
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
    /// The admin listener, once bound by [`Proxy::bind_admin`].
    admin: Option<TcpListener>,
}

impl Proxy {
    /// Creates a proxy (nothing is started or connected yet).
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            mechanisms: Arc::new(MechanismMetrics::default()),
            admin: None,
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

    /// Binds [`ProxyConfig::admin`] now rather than in [`serve`](Self::serve),
    /// and returns the bound address (useful with port 0); `None` when no
    /// admin address is configured. Calling it again returns the same address.
    ///
    /// # Errors
    ///
    /// [`ServeError::AdminUnavailable`] when an address is configured but
    /// the crate's `admin` feature is off (a config built without
    /// [`ProxyConfig::builder`]); [`ServeError::Bind`] when it is taken.
    pub async fn bind_admin(&mut self) -> Result<Option<SocketAddr>, ServeError> {
        self.check_admin_feature()?;
        if self.admin.is_none()
            && let Some(addr) = self.config.admin
        {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            self.admin = Some(listener);
        }
        match &self.admin {
            None => Ok(None),
            Some(l) => l.local_addr().map(Some).map_err(|source| ServeError::Bind {
                addr: self.config.admin.unwrap_or(self.config.listen),
                source,
            }),
        }
    }

    /// An admin address needs the `admin` feature (the builder checks it;
    /// the public fields can bypass the builder).
    fn check_admin_feature(&self) -> Result<(), ServeError> {
        admin_available(self.config.admin, cfg!(feature = "admin"))
    }

    /// Serves clients from `listener` until `shutdown` resolves, then stops
    /// accepting, lets connected clients receive the replies to commands already
    /// read (bounded by `shutdown_grace`), and returns.
    ///
    /// With [`ProxyConfig::admin`] set, the admin HTTP server (see
    /// `docs/cache-proxy.md`) runs alongside and stops with the proxy; its
    /// address is bound here unless [`bind_admin`](Self::bind_admin) did.
    pub async fn serve(
        #[cfg_attr(not(feature = "admin"), allow(unused_mut))] mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServeError> {
        self.check_admin_feature()?;
        // Bound before anything is spawned: a taken address fails cleanly.
        #[cfg(feature = "admin")]
        let admin_addr = self.bind_admin().await?;
        let pool = Pool::spawn(&self.config, &self.metrics);
        let live = match &self.config.policy {
            None => None,
            Some(source) => Some(Arc::new(
                Live::start(source, pool.clone(), Arc::clone(&self.mechanisms))
                    .await?
                    .with_near(&self.config),
            )),
        };
        #[cfg(feature = "admin")]
        let admin_stop = CancellationToken::new();
        #[cfg(feature = "admin")]
        let admin = match admin_addr {
            None => None,
            Some(addr) => {
                tracing::info!(%addr, "cache proxy admin listening");
                self.admin.take().map(|l| {
                    let state = crate::admin::AdminState {
                        metrics: Arc::clone(&self.metrics),
                        mechanisms: Arc::clone(&self.mechanisms),
                        hot: live.as_ref().map(|l| Arc::clone(&l.hot)),
                    };
                    crate::admin::spawn(l, state, admin_stop.clone())
                })
            }
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
        #[cfg(feature = "admin")]
        if let Some(task) = admin {
            admin_stop.cancel();
            let _ = task.await;
        }
        Ok(())
    }
}

/// Whether an admin address (if any) can be served with the `admin` feature
/// `compiled` in.
fn admin_available(admin: Option<SocketAddr>, compiled: bool) -> Result<(), ServeError> {
    match admin {
        Some(addr) if !compiled => Err(ServeError::AdminUnavailable(addr)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod admin_feature_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_admin_address_without_the_feature_is_an_error() {
        let addr: SocketAddr = ([127, 0, 0, 1], 9380).into();
        let err = admin_available(Some(addr), false).unwrap_err();
        assert!(matches!(err, ServeError::AdminUnavailable(a) if a == addr));
        assert!(err.to_string().contains("`admin` feature"), "{err}");
        assert!(admin_available(Some(addr), true).is_ok());
        assert!(admin_available(None, false).is_ok());
    }
}
