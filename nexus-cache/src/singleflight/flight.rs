//! One flight: the state shared by a leader and its followers.

use std::pin::pin;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::lock;

/// What a follower observes when a flight ends.
pub(super) enum Waited<V> {
    /// The leader finished; here is a clone of its value.
    Done(V),
    /// The leader's work panicked.
    Panicked,
    /// The leader was dropped before finishing; retry.
    Abandoned,
}

pub(super) struct Flight<V> {
    id: u64,
    /// `None` while running.
    state: Mutex<Option<Waited<V>>>,
    notify: Notify,
}

impl<V> Flight<V> {
    pub(super) fn new(id: u64) -> Self {
        Self {
            id,
            state: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Publishes the end of the flight and wakes every follower.
    pub(super) fn finish(&self, end: Waited<V>) {
        *lock(&self.state) = Some(end);
        self.notify.notify_waiters();
    }
}

impl<V: Clone> Flight<V> {
    /// Waits for the end of the flight. Cancellation safe (holds no lock
    /// across the await; dropping it only deregisters the waiter).
    pub(super) async fn wait(&self) -> Waited<V> {
        loop {
            let mut notified = pin!(self.notify.notified());
            // Register before checking the state so a `finish` between the
            // check and the await cannot be missed.
            notified.as_mut().enable();
            match &*lock(&self.state) {
                Some(Waited::Done(v)) => return Waited::Done(v.clone()),
                Some(Waited::Panicked) => return Waited::Panicked,
                Some(Waited::Abandoned) => return Waited::Abandoned,
                None => {}
            }
            notified.await;
        }
    }
}
