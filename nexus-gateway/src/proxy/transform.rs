//! Request and response transforms applied around every upstream call.

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Limited};

use crate::body::GatewayBody;
use crate::config::TransformSettings;
use crate::util::rfc3339_millis;

/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-gateway-version`.
pub const X_GATEWAY_VERSION: HeaderName = HeaderName::from_static("x-gateway-version");
/// `x-gateway-timestamp`.
pub const X_GATEWAY_TIMESTAMP: HeaderName = HeaderName::from_static("x-gateway-timestamp");
/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including those named by `Connection`.
/// `Transfer-Encoding` is left to hyper, which re-frames bodies itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
}

/// Rewrites client request headers for the upstream: strips hop-by-hop and
/// internal headers and `Host` (the client sets the upstream's), and injects the
/// request id, gateway version, `X-Forwarded-For` and `X-Gateway-Timestamp`.
pub fn request_headers(
    headers: &mut HeaderMap,
    t: &TransformSettings,
    request_id: &HeaderValue,
    peer: Option<IpAddr>,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    for h in &t.strip_headers {
        headers.remove(h);
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(X_GATEWAY_VERSION, t.gateway_version.clone());
    if let Some(ip) = peer {
        let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.is_empty() => format!("{prev}, {ip}"),
            _ => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::try_from(xff) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if let Ok(v) = HeaderValue::try_from(rfc3339_millis(SystemTime::now())) {
        headers.insert(X_GATEWAY_TIMESTAMP, v);
    }
}

/// Whether a response is `application/json` (parameters such as charset allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

/// Outcome of [`wrap_json`].
pub enum Wrapped {
    /// The new body (content-length must be set to its length).
    Body(Bytes),
    /// The body was not valid JSON; it is returned untouched.
    NotJson(Bytes),
}

/// Error while buffering a body for wrapping.
#[derive(Debug, thiserror::Error)]
pub enum WrapError {
    /// The body exceeded the cap.
    #[error("upstream JSON body exceeds {0} bytes")]
    TooLarge(usize),
    /// The upstream body failed mid-stream.
    #[error("upstream body: {0}")]
    Body(String),
}

/// Buffers (up to `cap` bytes) and wraps a JSON body as
/// `{"data":<body>,"_meta":{"requestId":..,"gateway":"nexus","timestamp":..}}`.
///
/// The upstream JSON is validated but not re-serialised: its bytes are copied as is.
/// The request id is already restricted to JSON-safe characters.
pub async fn wrap_json(
    body: GatewayBody,
    cap: usize,
    request_id: &HeaderValue,
) -> Result<Wrapped, WrapError> {
    let collected = Limited::new(body, cap).collect().await.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            WrapError::TooLarge(cap)
        } else {
            WrapError::Body(e.to_string())
        }
    })?;
    let raw = collected.to_bytes();
    if serde_json::from_slice::<&serde_json::value::RawValue>(&raw).is_err() {
        return Ok(Wrapped::NotJson(raw));
    }
    let ts = rfc3339_millis(SystemTime::now());
    let mut out = BytesMut::with_capacity(raw.len() + 96 + request_id.len());
    out.put_slice(b"{\"data\":");
    out.put_slice(&raw);
    out.put_slice(b",\"_meta\":{\"requestId\":\"");
    out.put_slice(request_id.as_bytes());
    out.put_slice(b"\",\"gateway\":\"nexus\",\"timestamp\":\"");
    out.put_slice(ts.as_bytes());
    out.put_slice(b"\"}}");
    Ok(Wrapped::Body(out.freeze()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none() && h.get("keep-alive").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.get("x-keep").unwrap(), "1");
    }

    #[test]
    fn json_detection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&h));
    }

    #[tokio::test]
    async fn wraps_valid_json_and_leaves_invalid() {
        let id = HeaderValue::from_static("rid-1");
        let Wrapped::Body(b) = wrap_json(GatewayBody::from("[1,2]"), 100, &id)
            .await
            .unwrap()
        else {
            panic!("expected wrapped");
        };
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"], serde_json::json!([1, 2]));
        assert_eq!(v["_meta"]["requestId"], "rid-1");
        assert_eq!(v["_meta"]["gateway"], "nexus");
        assert!(matches!(
            wrap_json(GatewayBody::from("{bad"), 100, &id)
                .await
                .unwrap(),
            Wrapped::NotJson(_)
        ));
        assert!(matches!(
            wrap_json(GatewayBody::from("[1,2,3,4]"), 4, &id).await,
            Err(WrapError::TooLarge(4))
        ));
    }
}
