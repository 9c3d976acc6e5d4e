//! Spawning `redis-server` and probing it with `PING`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::Command,
    sync::Arc,
    time::Duration,
};

use super::builder::Config;
use crate::{Error, Result, process::ServerProcess};

/// Bound on one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub(super) const LOG_FILE: &str = "redis.log";

/// Spawns `redis-server` on `addr` and waits (on a blocking thread) until it answers.
pub(super) async fn spawn_ready(
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
