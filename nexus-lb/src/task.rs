//! Ownership of background tasks (discovery, active health checks).

use tokio::task::JoinHandle;

/// Owns a background task: dropping it stops the task.
#[derive(Debug)]
#[must_use = "dropping the handle stops the task"]
pub struct TaskHandle {
    handle: Option<JoinHandle<()>>,
}

impl TaskHandle {
    pub(crate) fn new(handle: JoinHandle<()>) -> Self {
        Self {
            handle: Some(handle),
        }
    }

    /// Whether the task has ended (its stream finished).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the task and waits until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            // A cancelled or panicked task is what we asked for or reported by
            // the runtime; nothing more to do.
            let _ = h.await;
        }
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
