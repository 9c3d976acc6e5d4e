//! The gateway's own tower layers: the entry layer (request id, path
//! normalisation, trace span, metrics/telemetry/events on completion) and the
//! blocklist check.

mod block;
mod entry;

pub use block::{BlockGuard, BlocklistLayer, IpBlocked};
pub use entry::{CLIENT_CLOSED_REQUEST, Entry, EntryLayer, RequestContext, peer_addr};
