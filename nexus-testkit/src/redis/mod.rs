//! [`RedisServer`]: a real `redis-server` on a free loopback port.

mod builder;
mod cluster;
mod launch;

pub use builder::RedisServerBuilder;
use builder::{Config, DEFAULT_STARTUP_TIMEOUT};
pub use cluster::{RedisCluster, RedisClusterBuilder};
use launch::{LOG_FILE, spawn_ready};

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Result,
    binary::{REDIS_CLI, REDIS_SERVER},
    process::{ServerProcess, launch_on_port},
};

/// Bound on one `redis-cli` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on `127.0.0.1`, with no persistence, in its
/// own temporary directory.
///
/// It answers `PING` when [`start`](Self::start) returns. Dropping it kills the
/// process, reaps it and removes the directory. [`stop`](Self::stop) and
/// [`restart`](Self::restart) keep the port, for fault-injection tests.
///
/// ```no_run
/// # async fn demo() -> nexus_testkit::Result<()> {
/// let redis = nexus_testkit::RedisServer::start().await?;
/// redis.cli(["SET", "greeting", "hello"]).await?;
/// assert_eq!(redis.cli(["GET", "greeting"]).await?, "hello");
/// redis.stop(); // connections now fail ...
/// redis.restart().await?; // ... and the same address answers again, empty.
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisServer {
    config: Arc<Config>,
    addr: SocketAddr,
    binary: PathBuf,
    process: Mutex<Option<ServerProcess>>,
    // Dropped after `process` (fields drop in declaration order), so the
    // server is dead before its directory goes.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server with default options on a free port.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a server.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder {
            config: Config {
                password: None,
                port: None,
                args: Vec::new(),
                startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            },
        }
    }

    async fn launch(config: Config) -> Result<Self> {
        let binary = REDIS_SERVER.locate()?;
        let dir = tempfile::Builder::new().prefix("nexus-redis-").tempdir()?;
        let config = Arc::new(config);
        let (addr, process) = launch_on_port(config.port, |addr| {
            spawn_ready(
                binary.clone(),
                dir.path().to_path_buf(),
                addr,
                config.clone(),
            )
        })
        .await?;
        Ok(Self {
            config,
            addr,
            binary,
            process: Mutex::new(Some(process)),
            dir,
        })
    }

    /// The address it listens on (always `127.0.0.1`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A URL for clients: `redis://127.0.0.1:PORT`, or
    /// `redis://:PASSWORD@127.0.0.1:PORT` with a password.
    pub fn url(&self) -> String {
        match &self.config.password {
            Some(password) => format!("redis://:{password}@{}", self.addr),
            None => format!("redis://{}", self.addr),
        }
    }

    /// The password clients must send, if one was set.
    pub fn password(&self) -> Option<&str> {
        self.config.password.as_deref()
    }

    /// The temporary directory it runs in (holds `redis.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(ServerProcess::id)
    }

    /// Whether the process is running (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// The last lines of the server log, for failure messages.
    pub fn log_tail(&self) -> String {
        crate::process::log_tail(&self.dir.path().join(LOG_FILE))
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it to exit.
    /// Clients see refused connections until [`restart`](Self::restart).
    pub fn stop(&self) {
        // Take the process out first so the kill happens without the lock held.
        let process = self.lock().take();
        drop(process);
    }

    /// Stops the server if it runs, then starts a fresh, empty one on the same
    /// port and waits until it answers `PING`.
    pub async fn restart(&self) -> Result<()> {
        self.stop();
        let process = spawn_ready(
            self.binary.clone(),
            self.dir.path().to_path_buf(),
            self.addr,
            self.config.clone(),
        )
        .await?;
        *self.lock() = Some(process);
        Ok(())
    }

    /// Runs `redis-cli` (an independent client) against this server and
    /// returns its trimmed standard output, e.g. `cli(["GET", "k"])`.
    ///
    /// `redis-cli` prints errors on stdout with exit status 0, so a Redis error
    /// reply comes back as `Ok("ERR ...")`.
    pub async fn cli<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let binary = REDIS_CLI.locate()?;
        let mut command = Command::new(binary);
        command
            .arg("-h")
            .arg(self.addr.ip().to_string())
            .arg("-p")
            .arg(self.addr.port().to_string());
        if let Some(password) = &self.config.password {
            command.arg("-a").arg(password).arg("--no-auth-warning");
        }
        command.args(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        crate::client::run(command, CLI_TIMEOUT).await
    }

    fn lock(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
