//! A server process owned by a test: spawned with its output in a log file,
//! probed until it answers, killed and reaped when dropped.

use std::{
    fs::{self, File},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// How many bytes of a server log an error shows.
const LOG_TAIL_BYTES: usize = 2048;

/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// A running child process that is killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(mut command: Command, log: &Path) -> Result<Self> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Spawn {
                binary: program,
                source,
            })?;
        Ok(Self {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Blocks until `probe` succeeds, the process exits, or `timeout` passes.
    ///
    /// Blocking (run it on a blocking thread) on purpose: the wait uses the
    /// wall clock, so a test that pauses tokio's clock cannot make it time out
    /// early.
    pub(crate) fn wait_ready(
        &mut self,
        what: &'static str,
        addr: SocketAddr,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(Error::Exited {
                    what,
                    addr,
                    status: status.to_string(),
                    log: log_tail(&self.log),
                });
            }
            // The probe alone is not proof: if another process took the port
            // first, it might be that process answering. Require our own
            // process to hold the listening socket.
            if probe() && listens_on(self.child.id(), addr.port()) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what,
                    addr,
                    timeout,
                    log: log_tail(&self.log),
                });
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }

    /// The operating-system process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL then reap: no zombie, and the port is free once `wait` returns.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` holds a TCP socket listening on `port` (Linux `/proc`).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        fs::read_to_string(table).is_ok_and(|table| {
            table.lines().skip(1).any(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                // sl local_address rem_address st ... inode (field 9)
                fields.len() > 9
                    && fields[3] == "0A"
                    && fields[1]
                        .rsplit(':')
                        .next()
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                        == Some(port)
                    && inodes.iter().any(|inode| inode == fields[9])
            })
        })
    })
}

/// The last [`LOG_TAIL_BYTES`] of a log file, or a note saying it is unreadable.
pub(crate) fn log_tail(path: &Path) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(LOG_TAIL_BYTES);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

/// Whether a start-up failure means "someone else took the port".
pub(crate) fn is_port_conflict(err: &Error) -> bool {
    match err {
        Error::Exited { log, .. } | Error::NotReady { log, .. } => {
            log.contains("Address already in use") || log.contains("AddrInUse")
        }
        _ => false,
    }
}

/// How many ports a launch on a free port tries: another process can take the
/// port between [`free_port`] and the server binding it.
const PORT_ATTEMPTS: usize = 3;

/// Starts a server with `start` on `127.0.0.1:fixed`, or, when `fixed` is
/// `None`, on a free port, taking a new port when the server lost the race for
/// the one it was given ([`is_port_conflict`]). Returns the address it got.
pub(crate) async fn launch_on_port<T, F, Fut>(
    fixed: Option<u16>,
    mut start: F,
) -> Result<(SocketAddr, T)>
where
    F: FnMut(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let attempts = if fixed.is_some() { 1 } else { PORT_ATTEMPTS };
    let mut last_err = None;
    for _ in 0..attempts {
        let port = match fixed {
            Some(port) => port,
            None => free_port()?,
        };
        let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
        match start(addr).await {
            Ok(server) => return Ok((addr, server)),
            Err(err) if is_port_conflict(&err) => last_err = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last_err.unwrap_or_else(|| Error::InvalidOption {
        option: "port",
        reason: "no start attempt was made".into(),
    }))
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// The kernel hands out ephemeral ports in rotation, so a port just released is
/// unlikely to be handed out again soon; callers still retry on a conflict.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_our_own_listener_and_not_a_foreign_port() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(listens_on(std::process::id(), port));
        drop(listener);
        assert!(!listens_on(std::process::id(), port));
        // pid 1 does not listen on our ephemeral port.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(!listens_on(1, port));
    }
}
