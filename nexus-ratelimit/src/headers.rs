//! IETF `RateLimit-Policy` / `RateLimit` headers and the 429 response.
//!
//! Follows draft-ietf-httpapi-ratelimit-headers (structured fields):
//! `RateLimit-Policy: "default";q=10;w=5` states the quota (`q` tokens, fully
//! refilled in `w` seconds) and `RateLimit: "default";r=3;t=2` the current
//! state (`r` tokens remaining, full again in `t` seconds). A 429 also carries
//! `Retry-After` (seconds until one token is back, rounded up).

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::{ConfigError, Quota};

/// `RateLimit-Policy` header name.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` header name.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Longest `RateLimit` value: a quoted name of at most [`MAX_NAME`] bytes,
/// `;r=` and a `u32`, `;t=` and a `u64`.
const STATE_MAX: usize = MAX_NAME + 2 + 3 + 10 + 3 + 20;

/// Longest policy name.
const MAX_NAME: usize = 64;

/// Precomputed header parts for one policy.
#[derive(Debug, Clone)]
pub(crate) struct PolicyHeaders {
    name: Box<str>,
    policy: HeaderValue,
}

impl PolicyHeaders {
    pub(crate) fn new(name: &str, quota: &Quota) -> Result<Self, ConfigError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME
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
        // Formatted on the stack: the header value's own copy is the only
        // allocation (a `BytesMut` frozen into a header value costs a second one
        // for the shared buffer it becomes).
        let mut buf = [0u8; STATE_MAX];
        let mut n = 0;
        let mut put = |part: &[u8]| {
            // Always fits: the name is at most `MAX_NAME` bytes (validated).
            if let Some(dst) = buf.get_mut(n..n + part.len()) {
                dst.copy_from_slice(part);
                n += part.len();
            }
        };
        put(b"\"");
        put(self.name.as_bytes());
        put(b"\";r=");
        put(itoa::Buffer::new().format(remaining).as_bytes());
        put(b";t=");
        put(itoa::Buffer::new().format(ceil_secs(reset)).as_bytes());
        QuotaHeaders {
            policy: self.policy.clone(),
            // The name was validated as a token and the rest is digits.
            state: HeaderValue::from_bytes(&buf[..n]).ok(),
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
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_value_is_formatted_for_short_and_longest_names() {
        let quota = Quota::per_second(
            std::num::NonZeroU32::new(10).unwrap(),
            std::num::NonZeroU32::new(2).unwrap(),
        );
        let h = PolicyHeaders::default_name(&quota);
        let v = h.values(3, Duration::from_millis(1500));
        assert_eq!(v.state.unwrap(), "\"default\";r=3;t=2");
        let long = format!("p{}", "x".repeat(MAX_NAME - 1));
        let h = PolicyHeaders::new(&long, &quota).unwrap();
        let v = h.values(u32::MAX, Duration::MAX);
        let want = format!("\"{long}\";r={};t={}", u32::MAX, ceil_secs(Duration::MAX));
        assert_eq!(v.state.unwrap(), want.as_str());
        assert!(PolicyHeaders::new(&format!("{long}y"), &quota).is_err());
    }
}
