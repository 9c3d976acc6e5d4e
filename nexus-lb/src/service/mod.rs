//! The tower middleware that routes each request to a picked endpoint.

mod body;
mod future;
mod layer;
#[allow(clippy::module_inception)]
mod service;

pub use body::TrackedBody;
pub use future::ResponseFuture;
pub use layer::LbLayer;
pub use service::{Lb, ServedBy};
