//! `promtool check metrics`: validates a Prometheus text exposition with the
//! Prometheus project's own linter (Debian package `prometheus`).

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::binary::PROMTOOL;
use crate::{Error, Result};

/// Runs `promtool check metrics` on `exposition` (the body of a `/metrics`
/// response) and fails with promtool's complaints when it finds any: bad
/// syntax, a counter without `_total`, missing `HELP`, non-base units and the
/// other lint rules.
///
/// `promtool` is found through `NEXUS_PROMTOOL`, then `PATH` and `.tools/bin`;
/// a missing binary is an [`Error::BinaryNotFound`] naming the install command.
pub async fn check_metrics(exposition: &str) -> Result<()> {
    let bin = PROMTOOL.locate()?;
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: bin.display().to_string(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(exposition.as_bytes()).await?;
        stdin.shutdown().await?;
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "promtool ran for 30 s")
        })??;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Client {
        command: "promtool check metrics".into(),
        status: out.status.to_string(),
        stderr: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}
