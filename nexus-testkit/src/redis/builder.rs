//! [`RedisServerBuilder`]: options of a [`RedisServer`].

use std::time::Duration;

use super::RedisServer;
use crate::{Error, Result};

/// Default bound on waiting for `PING` to answer.
pub(super) const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options for [`RedisServer`], fixed when it is built.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) password: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) args: Vec<String>,
    pub(super) startup_timeout: Duration,
}

/// Builds a [`RedisServer`] with a password, a fixed port or extra arguments.
///
/// ```no_run
/// # async fn demo() -> nexus_testkit::Result<()> {
/// let redis = nexus_testkit::RedisServer::builder()
///     .password("s3cret")
///     .arg("--maxmemory")
///     .arg("16mb")
///     .start()
///     .await?;
/// assert_eq!(redis.password(), Some("s3cret"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisServerBuilder {
    pub(super) config: Config,
}

impl RedisServerBuilder {
    /// Requires clients to `AUTH` with this password (`--requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.config.password = Some(password.into());
        self
    }

    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// Adds one raw command-line argument for `redis-server` (e.g. `--maxmemory`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.config.args.push(arg.into());
        self
    }

    /// Bounds the wait for the first `PING` answer (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.config.startup_timeout = timeout;
        self
    }

    /// Starts the server and waits until it answers `PING`.
    pub async fn start(self) -> Result<RedisServer> {
        RedisServer::launch(self.config).await
    }

    /// Starts `count` independent servers with these options, each on its own port.
    ///
    /// A fixed [`port`](Self::port) cannot be shared, so it is rejected here.
    pub async fn start_many(self, count: usize) -> Result<Vec<RedisServer>> {
        if self.config.port.is_some() && count > 1 {
            return Err(Error::InvalidOption {
                option: "port",
                reason: "several servers cannot share one fixed port".into(),
            });
        }
        let mut servers = Vec::with_capacity(count);
        for _ in 0..count {
            servers.push(RedisServer::launch(self.config.clone()).await?);
        }
        Ok(servers)
    }
}
