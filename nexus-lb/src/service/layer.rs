use tower_layer::Layer;

use super::Lb;
use crate::Balancer;

/// Wraps a service (typically an HTTP client) in [`Lb`].
#[derive(Debug, Clone)]
pub struct LbLayer {
    balancer: Balancer,
}

impl LbLayer {
    /// A layer routing through `balancer`.
    pub fn new(balancer: Balancer) -> Self {
        Self { balancer }
    }
}

impl<S> Layer<S> for LbLayer {
    type Service = Lb<S>;

    fn layer(&self, inner: S) -> Lb<S> {
        Lb::new(inner, self.balancer.clone())
    }
}
