use bytes::Bytes;
use http_body_util::{Empty, Full};

/// A request body that can be sent again for a retry.
///
/// Implemented for bodies that are already in memory. A streaming body
/// cannot be replayed once sent, so requests with one are never retried;
/// buffer small bodies into [`Full<Bytes>`] first if they should be.
pub trait ReplayBody: Sized {
    /// A copy to send again, or `None` if this body cannot be replayed.
    fn try_replay(&self) -> Option<Self>;
}

impl<D: Clone> ReplayBody for Full<D> {
    fn try_replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for Empty<D> {
    fn try_replay(&self) -> Option<Self> {
        Some(Empty::new())
    }
}

impl ReplayBody for Bytes {
    fn try_replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for String {
    fn try_replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayBody for () {
    fn try_replay(&self) -> Option<Self> {
        Some(())
    }
}
