//! [`KafkaBroker`]: a real Kafka-protocol broker (Tansu) on a free loopback port.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Error, KafkaClient, Result,
    binary::TANSU,
    kafka_probe,
    process::{ServerProcess, launch_on_port, log_tail},
};

/// Default bound on waiting for the first metadata answer.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Tansu's in-memory storage: fast, and empty after every (re)start.
pub const MEMORY_STORAGE: &str = "memory://tansu/";

const LOG_FILE: &str = "tansu.log";

/// Environment variables Tansu reads as defaults; cleared so that a developer's
/// shell cannot change a test broker behind its flags.
const TANSU_ENV: [&str; 5] = [
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
];

#[derive(Debug, Clone)]
struct Config {
    port: Option<u16>,
    storage: String,
    args: Vec<String>,
    startup_timeout: Duration,
}

/// Builds a [`KafkaBroker`] with a fixed port, another storage engine or extra arguments.
#[derive(Debug, Clone)]
#[must_use]
pub struct KafkaBrokerBuilder {
    config: Config,
}

impl KafkaBrokerBuilder {
    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.config.port = Some(port);
        self
    }

    /// Tansu storage engine URL (default [`MEMORY_STORAGE`]).
    pub fn storage(mut self, url: impl Into<String>) -> Self {
        self.config.storage = url.into();
        self
    }

    /// Adds one raw command-line argument after `tansu broker`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.config.args.push(arg.into());
        self
    }

    /// Bounds the wait for the first metadata answer (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.config.startup_timeout = timeout;
        self
    }

    /// Starts the broker and waits until it answers a metadata request that
    /// advertises its own address.
    pub async fn start(self) -> Result<KafkaBroker> {
        KafkaBroker::launch(self.config).await
    }
}

/// A Tansu broker child process on `127.0.0.1`, speaking the Apache Kafka
/// protocol, with in-memory storage in its own temporary directory.
///
/// Known behaviour of this broker that tests must allow for:
/// - its memory storage reports a wrong high watermark, so consumers in tests
///   start from the **earliest** offset;
/// - a consumer-group join takes about half of `session.timeout.ms`, so tests
///   use a short session timeout (about 6 s);
/// - topics are created on first use (3 partitions), or explicitly with
///   [`KafkaClient::create_topic`];
/// - [`restart`](Self::restart) brings back an **empty** broker.
///
/// ```no_run
/// # async fn demo() -> nexus_testkit::Result<()> {
/// let kafka = nexus_testkit::KafkaBroker::start().await?;
/// let client = kafka.client(); // confluent-kafka, an independent client
/// client.produce("orders", &[("k1", "v1")]).await?;
/// let read = client.consume("orders", 1, std::time::Duration::from_secs(20)).await?;
/// assert_eq!(read[0].value.as_deref(), Some("v1"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct KafkaBroker {
    config: Arc<Config>,
    addr: SocketAddr,
    binary: PathBuf,
    process: Mutex<Option<ServerProcess>>,
    // Dropped after `process`: the broker dies before its directory goes.
    dir: TempDir,
}

impl KafkaBroker {
    /// Starts a broker with memory storage on a free port.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a broker.
    pub fn builder() -> KafkaBrokerBuilder {
        KafkaBrokerBuilder {
            config: Config {
                port: None,
                storage: MEMORY_STORAGE.to_owned(),
                args: Vec::new(),
                startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            },
        }
    }

    async fn launch(config: Config) -> Result<Self> {
        let binary = TANSU.locate()?;
        let dir = tempfile::Builder::new().prefix("nexus-kafka-").tempdir()?;
        let config = Arc::new(config);
        let (addr, process) = launch_on_port(config.port, |addr| {
            spawn_ready(&binary, dir.path(), addr, &config)
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

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The address it listens on and advertises.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// An independent (confluent-kafka) client for this broker.
    pub fn client(&self) -> KafkaClient {
        KafkaClient::new(self.bootstrap())
    }

    /// The temporary directory it runs in (holds `tansu.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The storage engine URL it runs with.
    pub fn storage(&self) -> &str {
        &self.config.storage
    }

    /// The process id, or `None` while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.lock().as_ref().map(ServerProcess::id)
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// The last lines of the broker log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join(LOG_FILE))
    }

    /// Kills the broker (SIGKILL, like a crash) and waits for it to exit.
    pub fn stop(&self) {
        let process = self.lock().take();
        drop(process);
    }

    /// Stops the broker if it runs, then starts a fresh one on the same port
    /// (empty with memory storage) and waits until it answers.
    pub async fn restart(&self) -> Result<()> {
        self.stop();
        let process = spawn_ready(&self.binary, self.dir.path(), self.addr, &self.config).await?;
        *self.lock() = Some(process);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<ServerProcess>> {
        self.process.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Spawns `tansu broker` on `addr` and waits (on a blocking thread) until a
/// metadata request answers with `addr` among the advertised brokers.
async fn spawn_ready(
    binary: &Path,
    dir: &Path,
    addr: SocketAddr,
    config: &Arc<Config>,
) -> Result<ServerProcess> {
    let (binary, dir, config) = (binary.to_path_buf(), dir.to_path_buf(), config.clone());
    let task = tokio::task::spawn_blocking(move || {
        let url = format!("tcp://{addr}");
        let mut command = Command::new(&binary);
        for var in TANSU_ENV {
            command.env_remove(var);
        }
        command
            .current_dir(&dir)
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            // Without this the broker tells clients to reconnect to localhost:9092.
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg(&config.storage)
            .arg("--cluster-id")
            .arg("nexus-test")
            .args(&config.args);
        let mut process = ServerProcess::spawn(command, &dir.join(LOG_FILE))?;
        process.wait_ready("tansu broker", addr, config.startup_timeout, || {
            kafka_probe::metadata(addr, PROBE_TIMEOUT)
                .map(|brokers| brokers.iter().any(|b| b.port == addr.port()))
                .unwrap_or(false)
        })?;
        Ok(process)
    });
    task.await
        .map_err(|join| Error::Io(std::io::Error::other(join)))?
}
