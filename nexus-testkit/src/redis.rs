//! [`RedisServer`]: a real `redis-server` on a free loopback port.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tempfile::TempDir;

use crate::{
    Error, Result,
    binary::{REDIS_CLI, REDIS_SERVER},
    process::{ServerProcess, free_port, is_port_conflict},
};

/// How many fresh ports a start tries when another process takes the port first.
const PORT_ATTEMPTS: usize = 3;

/// Default bound on waiting for `PING` to answer.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one `redis-cli` run.
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Options for [`RedisServer`], fixed when it is built.
#[derive(Debug, Clone)]
struct Config {
    password: Option<String>,
    port: Option<u16>,
    args: Vec<String>,
    startup_timeout: Duration,
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
    config: Config,
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
        let attempts = if config.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut last_err = None;
        for _ in 0..attempts {
            let port = match config.port {
                Some(port) => port,
                None => free_port()?,
            };
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let spawn = spawn_ready(
                binary.clone(),
                dir.path().to_path_buf(),
                addr,
                config.clone(),
            );
            match spawn.await {
                Ok(process) => {
                    return Ok(Self {
                        config,
                        addr,
                        binary,
                        process: Mutex::new(Some(process)),
                        dir,
                    });
                }
                Err(err) if is_port_conflict(&err) => last_err = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::InvalidOption {
            option: "port",
            reason: "no start attempt was made".into(),
        }))
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

const LOG_FILE: &str = "redis.log";

/// Spawns `redis-server` on `addr` and waits (on a blocking thread) until it answers.
async fn spawn_ready(
    binary: PathBuf,
    dir: PathBuf,
    addr: SocketAddr,
    config: Arc<Config>,
) -> Result<ServerProcess> {
    let task = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(&binary);
        command
            .arg("--port")
            .arg(addr.port().to_string())
            .arg("--bind")
            .arg(addr.ip().to_string())
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&dir)
            .arg("--daemonize")
            .arg("no")
            .args(&config.args);
        if let Some(password) = &config.password {
            command.arg("--requirepass").arg(password);
        }
        let mut process = ServerProcess::spawn(command, &dir.join(LOG_FILE))?;
        let password = config.password.as_deref();
        process.wait_ready("redis-server", addr, config.startup_timeout, || {
            ping(addr, password)
        })?;
        Ok(process)
    });
    task.await
        .map_err(|join| Error::Io(std::io::Error::other(join)))?
}

/// One bounded `PING` (after `AUTH` when a password is set). True on `+PONG`.
fn ping(addr: SocketAddr, password: Option<&str>) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(PROBE_TIMEOUT))?;
        let mut request = Vec::new();
        if let Some(password) = password {
            request.extend_from_slice(
                format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()).as_bytes(),
            );
        }
        request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        stream.write_all(&request)?;
        // Read until PONG or an error reply; the answer is a few bytes.
        let mut reply = Vec::with_capacity(64);
        let mut buf = [0_u8; 64];
        while reply.len() < 256 {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Ok(false);
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.windows(5).any(|w| w == b"+PONG") {
                return Ok(true);
            }
            if reply.starts_with(b"-") || reply.windows(3).any(|w| w == b"\n-") {
                return Ok(false); // -LOADING, -NOAUTH, -WRONGPASS: not usable yet
            }
        }
        Ok(false)
    };
    attempt().unwrap_or(false)
}
