//! What counts as a failure.

use crate::Outcome;

/// Classifies the result of one call through the layer.
///
/// Timeouts raised by the layer itself are always failures and are not passed
/// here.
pub trait Classify<Res, E>: Clone + Send + Sync + 'static {
    /// The outcome of `result`.
    fn classify(&self, result: Result<&Res, &E>) -> Outcome;
}

/// Failures are errors of the inner service (connect errors, I/O, a timeout
/// layer below) and `5xx` responses; everything else is a success.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultClassifier;

impl<B, E> Classify<http::Response<B>, E> for DefaultClassifier {
    fn classify(&self, result: Result<&http::Response<B>, &E>) -> Outcome {
        match result {
            Ok(res) if !res.status().is_server_error() => Outcome::Success,
            _ => Outcome::Failure,
        }
    }
}
