//! Watching a policy file and swapping new policies in atomically.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::metrics::MechanismMetrics;
use super::{Policy, PolicyError};

/// Largest policy file accepted, in bytes.
pub const MAX_POLICY_FILE: u64 = 1024 * 1024;

/// The active policy, shared by every connection. Cheap to clone; reading it
/// ([`PolicyHandle::load`]) is lock-free.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    current: Arc<ArcSwap<Policy>>,
}

impl PolicyHandle {
    /// A handle holding `policy`.
    pub fn new(policy: Policy) -> Self {
        Self {
            current: Arc::new(ArcSwap::from_pointee(policy)),
        }
    }

    /// Reads, validates and compiles the file at `path`.
    pub async fn load_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
        read_policy(path.as_ref()).await.map(|(p, _)| p)
    }

    /// The active policy. Hold the guard only briefly (not across `.await`).
    pub fn load(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.current.load()
    }

    /// The active policy as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Replaces the active policy.
    pub fn store(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
    }
}

/// How the [`Reloader`] polls.
#[derive(Debug, Clone)]
pub struct ReloaderConfig {
    /// The policy file.
    pub path: PathBuf,
    /// Time between two checks of the file's modification time and size.
    pub interval: Duration,
}

impl ReloaderConfig {
    /// Polls `path` every 500 ms.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            interval: Duration::from_millis(500),
        }
    }
}

/// A background task that reloads the policy when its file changes.
///
/// Every `interval` it compares the file's modification time and size with
/// the last seen ones; when they differ, and have held still for one more
/// interval (a file being written, e.g. truncated and then filled by a
/// non-atomic save, is never read half-written), it reads the file and
/// compares a hash of its content, so a touch without an edit does nothing. A changed file is
/// compiled and swapped in; an invalid one is logged with `tracing::warn!`
/// (once per distinct content), counted, and the old policy stays.
///
/// The task stops when the `Reloader` is dropped or [`Reloader::shutdown`].
#[derive(Debug)]
pub struct Reloader {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Starts watching. `handle` should hold the policy loaded from the same
    /// file; a file that compiles to the active rules is not counted as a reload.
    pub fn spawn(
        config: ReloaderConfig,
        handle: PolicyHandle,
        metrics: Arc<MechanismMetrics>,
    ) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut watch = Watch::new(config.path);
            let mut tick = tokio::time::interval(config.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    _ = tick.tick() => {}
                }
                match watch.check().await {
                    None => {}
                    // First look at the file, or an edit that changes nothing.
                    Some(Ok(policy)) if policy.rules() == handle.load().rules() => {}
                    Some(Ok(policy)) => {
                        handle.store(policy);
                        metrics.policy_reloads_ok.fetch_add(1, Relaxed);
                        tracing::info!(path = %watch.path.display(), "policy reloaded");
                    }
                    Some(Err(error)) => {
                        metrics.policy_reloads_failed.fetch_add(1, Relaxed);
                        tracing::warn!(path = %watch.path.display(), %error, "policy reload rejected; keeping the previous policy");
                    }
                }
            }
        });
        Self {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the task and waits for it to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// Change detection state: what the file looked like at the last check.
struct Watch {
    path: PathBuf,
    stamp: Option<Stamp>,
    /// A changed stamp seen at the last check, not yet acted on: a change
    /// is read once the stamp is the same at two checks in a row.
    settling: Option<Stamp>,
    hash: Option<u64>,
    missing_reported: bool,
}

impl Watch {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            stamp: None,
            settling: None,
            hash: None,
            missing_reported: false,
        }
    }

    /// `Some` when the file changed: the new policy or why it was rejected.
    async fn check(&mut self) -> Option<Result<Policy, PolicyError>> {
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            Err(source) => {
                // Report a vanished file once, not every interval (editors
                // briefly remove files while saving).
                if std::mem::replace(&mut self.missing_reported, true) {
                    return None;
                }
                self.stamp = None;
                return Some(Err(PolicyError::Io {
                    path: self.path.clone(),
                    source,
                }));
            }
        };
        self.missing_reported = false;
        let now = stamp(&meta);
        if self.stamp == Some(now) {
            self.settling = None;
            return None;
        }
        // Still being written (or just written): look again next time.
        if self.settling.replace(now) != Some(now) {
            return None;
        }
        let (bytes, result) = match read_checked(&self.path, meta.len()).await {
            Ok(bytes) => {
                let result = std::str::from_utf8(&bytes)
                    .map_err(|e| PolicyError::invalid("(file)", format!("not UTF-8: {e}")))
                    .and_then(Policy::from_yaml_str);
                (Some(bytes), result)
            }
            Err(e) => (None, Err(e)),
        };
        self.settling = None;
        self.stamp = Some(now);
        if let Some(bytes) = bytes {
            let h = hash(&bytes);
            if self.hash == Some(h) {
                return None;
            }
            self.hash = Some(h);
        }
        Some(result)
    }
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    }
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

async fn read_checked(path: &Path, len: u64) -> Result<Vec<u8>, PolicyError> {
    if len > MAX_POLICY_FILE {
        return Err(PolicyError::TooLarge {
            path: path.to_owned(),
            len,
            max: MAX_POLICY_FILE,
        });
    }
    tokio::fs::read(path)
        .await
        .map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })
}

async fn read_policy(path: &Path) -> Result<(Policy, u64), PolicyError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })?;
    let bytes = read_checked(path, meta.len()).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| PolicyError::invalid("(file)", format!("not UTF-8: {e}")))?;
    Ok((Policy::from_yaml_str(text)?, hash(&bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_change_is_read_only_once_the_file_held_still() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, "rules: []\n").unwrap();
        let mut watch = Watch::new(path.clone());
        assert!(watch.check().await.is_none(), "first look: settling");
        assert!(matches!(watch.check().await, Some(Ok(_))));
        assert!(watch.check().await.is_none(), "unchanged");
        // A non-atomic save: one check sees the file truncated, the next
        // one filled. The empty file is never read as a policy.
        std::fs::write(&path, "").unwrap();
        assert!(watch.check().await.is_none(), "truncated: settling");
        std::fs::write(&path, "rules:\n  - commands: [SET]\n    ttl: 30\n").unwrap();
        assert!(watch.check().await.is_none(), "changed again: settling");
        let policy = watch.check().await.unwrap().unwrap();
        assert_eq!(policy.rules().len(), 1);
        assert!(watch.check().await.is_none(), "unchanged");
    }
}
