//! `BreakerLayer`: wraps a service (one endpoint) in a [`Breaker`].

use tower_layer::Layer;

use crate::{Breaker, CircuitBreaker, DefaultClassifier};

/// Puts a [`Breaker`] in front of a service. Every service built by one
/// layer shares the layer's breaker, so build one layer per endpoint.
#[derive(Debug, Clone)]
pub struct BreakerLayer<C = DefaultClassifier> {
    breaker: Breaker,
    classifier: C,
}

impl BreakerLayer<DefaultClassifier> {
    /// A layer with the default classifier (errors and 5xx fail).
    pub fn new(breaker: Breaker) -> Self {
        Self {
            breaker,
            classifier: DefaultClassifier,
        }
    }
}

impl<C> BreakerLayer<C> {
    /// Replaces the classifier.
    pub fn with_classifier<C2>(self, classifier: C2) -> BreakerLayer<C2> {
        BreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker (for snapshots or passive health).
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for BreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
