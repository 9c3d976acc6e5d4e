//! Callback run on every rejection.

use std::time::Duration;

use http::{Extensions, HeaderMap, Method, Uri};

/// What the limiter knows about a request it refused.
#[derive(Debug)]
#[non_exhaustive]
pub struct Rejection<'a, K> {
    /// The request's key; `None` when it had none and was charged to the
    /// shared bucket.
    pub key: Option<&'a K>,
    /// Request method.
    pub method: &'a Method,
    /// Request URI.
    pub uri: &'a Uri,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Request extensions (e.g. the peer address, an auth subject).
    pub extensions: &'a Extensions,
    /// When the request would be admitted.
    pub retry_after: Duration,
}

/// Called synchronously on the request path for every rejected request, before
/// the 429 is returned: keep it cheap and non-blocking (increment a counter,
/// `try_send` an event).
///
/// Closures `Fn(&Rejection<'_, K>)` implement it.
pub trait OnReject<K>: Send + Sync + 'static {
    /// Handles one rejection.
    fn on_reject(&self, rejection: &Rejection<'_, K>);
}

impl<K, F> OnReject<K> for F
where
    F: Fn(&Rejection<'_, K>) + Send + Sync + 'static,
{
    fn on_reject(&self, rejection: &Rejection<'_, K>) {
        self(rejection)
    }
}
