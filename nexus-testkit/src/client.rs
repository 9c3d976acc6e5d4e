//! Running the independent command-line clients (redis-cli, the Kafka script).

use std::{
    io::Read,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// Runs `command` to completion (killing it after `timeout`) on a blocking
/// thread and returns its trimmed stdout, or [`Error::Client`] with its stderr
/// when it fails.
pub(crate) async fn run(command: Command, timeout: Duration) -> Result<String> {
    run_with_stdin(command, Stdio::null(), timeout).await
}

/// Like [`run`], with `stdin` as the child's standard input.
pub(crate) async fn run_with_stdin(
    mut command: Command,
    stdin: Stdio,
    timeout: Duration,
) -> Result<String> {
    command.stdin(stdin);
    tokio::task::spawn_blocking(move || run_blocking(command, timeout))
        .await
        .map_err(|join| Error::Io(std::io::Error::other(join)))?
}

fn run_blocking(mut command: Command, timeout: Duration) -> Result<String> {
    let line = format!("{command:?}");
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: line.clone(),
            source,
        })?;
    // Drain both pipes on their own threads so a chatty child cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_bounded(&mut child, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(stdout.trim().to_owned()),
        Some(status) => Err(Error::Client {
            command: line,
            status: status.to_string(),
            stderr: stderr.trim().to_owned(),
        }),
        None => Err(Error::Client {
            command: line,
            status: format!("killed after {timeout:?}"),
            stderr: stderr.trim().to_owned(),
        }),
    }
}

/// Waits up to `timeout`; on expiry kills the child and returns `None`.
fn wait_bounded(child: &mut Child, timeout: Duration) -> Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}
