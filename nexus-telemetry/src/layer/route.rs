//! The matched route template, as a request or response extension.

use std::borrow::Cow;

/// The route template a request matched (`/api/products/{id}`), never the raw
/// path, so that `http.route` and span names have bounded cardinality.
///
/// [`ServerTraceLayer`](super::ServerTraceLayer) reads it from the request
/// extensions (when an outer layer matched the route) or, failing that, from
/// the response extensions (when the router runs inside the trace layer).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteTemplate(pub Cow<'static, str>);

impl RouteTemplate {
    /// A template from a static string.
    pub const fn from_static(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for RouteTemplate {
    fn from(s: &'static str) -> Self {
        Self::from_static(s)
    }
}

impl From<String> for RouteTemplate {
    fn from(s: String) -> Self {
        Self(Cow::Owned(s))
    }
}
