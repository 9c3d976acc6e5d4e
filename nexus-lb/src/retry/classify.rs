use std::error::Error;
use std::io;

use crate::error::{BoxError, LbError};

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made: the request was not sent.
    Connect,
    /// The attempt timed out.
    Timeout,
    /// The endpoint's circuit breaker is open (no attempt was made).
    CircuitOpen,
    /// The connection failed after the request may have been sent (reset,
    /// closed mid-response): safe to retry for idempotent requests only.
    Transport,
}

/// Predicate recognising a circuit breaker's "open" error in an error chain.
pub type IsCircuitOpen<'a> = dyn Fn(&(dyn Error + 'static)) -> bool + Send + Sync + 'a;

pub(crate) type CircuitOpenFn = IsCircuitOpen<'static>;

fn io_kind(e: &io::Error) -> Option<FailureKind> {
    use io::ErrorKind::*;
    Some(match e.kind() {
        TimedOut => FailureKind::Timeout,
        ConnectionRefused | NotConnected | AddrNotAvailable | HostUnreachable
        | NetworkUnreachable => FailureKind::Connect,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => FailureKind::Transport,
        _ => return None,
    })
}

fn one(e: &(dyn Error + 'static), circuit_open: Option<&IsCircuitOpen<'_>>) -> Option<FailureKind> {
    if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
        return Some(FailureKind::Timeout);
    }
    if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
        // A connect error may wrap a timeout; report the outer meaning.
        return Some(if h.is_connect() {
            FailureKind::Connect
        } else {
            FailureKind::Transport
        });
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        return Some(if h.is_timeout() {
            FailureKind::Timeout
        } else {
            FailureKind::Transport
        });
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return io_kind(io);
    }
    if circuit_open.is_some_and(|f| f(e)) {
        return Some(FailureKind::CircuitOpen);
    }
    None
}

/// Classifies an error from an [`Lb`](crate::Lb) stack: `None` means "not a
/// failure a retry can help with" (no endpoint available, an invalid URI, or
/// an unknown error).
///
/// Looks through the whole source chain for tower/tokio timeouts,
/// hyper/hyper-util client errors and I/O errors. `circuit_open` recognises
/// the circuit breaker's fail-fast error (this crate does not depend on the
/// breaker; see [`RetryPolicy::circuit_open_if`](crate::retry::RetryPolicy::circuit_open_if)).
pub fn classify_error(
    error: &BoxError,
    circuit_open: Option<&IsCircuitOpen<'_>>,
) -> Option<FailureKind> {
    let top: &(dyn Error + 'static) = &**error;
    if let Some(LbError::NoAvailableEndpoint | LbError::InvalidUri { .. }) =
        top.downcast_ref::<LbError>()
    {
        return None;
    }
    let mut cur = Some(top);
    while let Some(e) = cur {
        if let Some(kind) = one(e, circuit_open) {
            return Some(kind);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    fn upstream(source: BoxError) -> BoxError {
        Box::new(LbError::Upstream {
            endpoint: Arc::from("http://a:1"),
            endpoint_id: 1,
            source,
        })
    }

    #[derive(Debug, thiserror::Error)]
    #[error("circuit open")]
    struct Open;

    #[test]
    fn chains_are_classified() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            classify_error(&upstream(Box::new(refused)), None),
            Some(FailureKind::Connect)
        );
        assert_eq!(
            classify_error(
                &upstream(Box::new(tower::timeout::error::Elapsed::new())),
                None
            ),
            Some(FailureKind::Timeout)
        );
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            classify_error(&upstream(Box::new(reset)), None),
            Some(FailureKind::Transport)
        );
        let pred = |e: &(dyn Error + 'static)| e.is::<Open>();
        assert_eq!(
            classify_error(&upstream(Box::new(Open)), Some(&pred)),
            Some(FailureKind::CircuitOpen)
        );
        assert_eq!(classify_error(&upstream(Box::new(Open)), None), None);
        assert_eq!(
            classify_error(&(Box::new(LbError::NoAvailableEndpoint) as BoxError), None),
            None
        );
    }
}
