//! Endpoint discovery: anything that yields whole endpoint sets.
//!
//! The balancer consumes a [`Stream`] of
//! `Vec<EndpointSpec>` ([`Balancer::spawn_discovery`](crate::Balancer::spawn_discovery)),
//! each item the complete current set (like a Kubernetes EndpointSlice or a
//! DNS answer; the balancer does the diffing). Provided sources:
//! [`watch_services_file`] for the seed's `services.json`, and
//! [`from_watch`] for a `tokio::sync::watch` channel fed by anything else.

mod file;

pub use file::{MAX_FILE_LEN, ServiceEntry, ServicesFile, parse_services, watch_services_file};

use futures_util::Stream;
use tokio::sync::watch;

use crate::EndpointSpec;

/// A discovery stream from a `watch` channel: yields the current set, then
/// each new one; ends when the sender is dropped.
pub fn from_watch(
    rx: watch::Receiver<Vec<EndpointSpec>>,
) -> impl Stream<Item = Vec<EndpointSpec>> + Send + 'static {
    futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let set = rx.borrow_and_update().clone();
        Some((set, (rx, false)))
    })
}
