//! IETF `RateLimit-Policy` / `RateLimit` headers and the 429 response.
//!
//! Follows draft-ietf-httpapi-ratelimit-headers (structured fields):
//! `RateLimit-Policy: "default";q=10;w=5` states the quota (`q` tokens, fully
//! refilled in `w` seconds) and `RateLimit: "default";r=3;t=2` the current
//! state (`r` tokens remaining, full again in `t` seconds). A 429 also carries
//! `Retry-After` (seconds until one token is back, rounded up).

use std::fmt::Write as _;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::{ConfigError, Quota};

/// `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Precomputed header parts for one policy.
#[derive(Debug, Clone)]
pub(crate) struct PolicyHeaders {
    name: Box<str>,
    policy: HeaderValue,
}

impl PolicyHeaders {
    pub(crate) fn new(name: &str, quota: &Quota) -> Result<Self, ConfigError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !valid {
            return Err(ConfigError::PolicyName(name.to_owned()));
        }
        Ok(Self::build(name, quota))
    }

    /// Headers for the built-in policy name `default`.
    pub(crate) fn default_name(quota: &Quota) -> Self {
        Self::build("default", quota)
    }

    /// `name` must be a validated token: the value is then visible ASCII.
    fn build(name: &str, quota: &Quota) -> Self {
        let text = format!(
            "\"{name}\";q={};w={}",
            quota.capacity(),
            ceil_secs(quota.window())
        );
        Self {
            name: name.into(),
            policy: HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("")),
        }
    }

    /// `RateLimit-Policy` and `RateLimit` values for a state.
    pub(crate) fn values(&self, remaining: u32, reset: Duration) -> QuotaHeaders {
        // One allocation: the value is written into a buffer the header
        // value then shares (no copy into a second one).
        let mut text = BytesMut::with_capacity(self.name.len() + 24);
        // Writing into a BytesMut cannot fail.
        let _ = write!(
            text,
            "\"{}\";r={remaining};t={}",
            self.name,
            ceil_secs(reset)
        );
        QuotaHeaders {
            policy: self.policy.clone(),
            // The name was validated as a token and the rest is digits.
            state: HeaderValue::from_maybe_shared(text.freeze()).ok(),
        }
    }

    /// The 429 response.
    pub(crate) fn rejection<B: From<Bytes>>(
        &self,
        retry_after: Duration,
        reset: Duration,
    ) -> Response<B> {
        let secs = ceil_secs(retry_after);
        let mut body = BytesMut::with_capacity(96);
        body.put_slice(
            b"{\"error\":\"rate_limited\",\"message\":\"Too many requests\",\"retry_after_secs\":",
        );
        body.put_slice(secs.to_string().as_bytes());
        body.put_u8(b'}');
        let mut res = Response::new(B::from(body.freeze()));
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        self.values(0, reset).apply(headers);
        res
    }
}

/// Header values describing a key's quota after one request.
#[derive(Debug, Clone)]
pub(crate) struct QuotaHeaders {
    policy: HeaderValue,
    state: Option<HeaderValue>,
}

impl QuotaHeaders {
    /// Adds `RateLimit-Policy` and `RateLimit` to `headers`.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        if let Some(state) = self.state {
            headers.insert(RATELIMIT, state);
        }
    }
}

/// Whole seconds, rounded up (a client that waits that long will be admitted).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
