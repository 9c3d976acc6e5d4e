//! Request and response transforms applied around every upstream call.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::SystemTime;

use bytes::{BufMut, Bytes, BytesMut};
use http::Uri;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};

use crate::body::GatewayBody;
use crate::config::TransformSettings;
use crate::util::timestamp_header;

/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-gateway-version`.
pub const X_GATEWAY_VERSION: HeaderName = HeaderName::from_static("x-gateway-version");
/// `x-gateway-timestamp`.
pub const X_GATEWAY_TIMESTAMP: HeaderName = HeaderName::from_static("x-gateway-timestamp");
/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-real-ip`.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `forwarded` (RFC 7239).
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

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

/// Whether `name` is one of [`HOP_BY_HOP`] (a string match: no hashing).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "upgrade"
    )
}

/// Removes hop-by-hop headers, including those named by `Connection`.
/// `Transfer-Encoding` is left to hyper, which re-frames bodies itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually none is present: one pass over the names there are instead of a
    // hashed lookup for each of the eight absent ones.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
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
/// request id, gateway version, the forwarding headers and `X-Gateway-Timestamp`.
///
/// Forwarding headers: the peer is appended to the client's `X-Forwarded-For`
/// (the rightmost entry is the one this gateway vouches for); `X-Real-IP` is
/// set to the peer, `X-Forwarded-Proto` to `http` (the listener's scheme) and
/// `X-Forwarded-Host` to the client's `Host` (`authority`: the request
/// target's, for HTTP/2 or an absolute-form target), each replacing what the
/// client sent, so none of them can be forged. A client's RFC 7239 `Forwarded`
/// is removed: the gateway trusts no previous hop (the rate limiter keys on
/// the peer, not on any header), consumers of `Forwarded` commonly read its
/// first element, which the client wrote, and `X-Forwarded-*` carry the same
/// facts.
pub fn request_headers(
    headers: &mut HeaderMap,
    t: &TransformSettings,
    request_id: &HeaderValue,
    peer: Option<IpAddr>,
    authority: Option<&Authority>,
) {
    strip_hop_by_hop(headers);
    let host = headers.remove(header::HOST).or_else(|| {
        authority.and_then(|a| {
            HeaderValue::from_maybe_shared(Bytes::copy_from_slice(a.as_str().as_bytes())).ok()
        })
    });
    headers.remove(FORWARDED);
    // One pass over the names there are (usually a handful) instead of a hashed
    // removal for each configured name, which is usually absent.
    if headers.keys().any(|k| t.strip_headers.contains(k)) {
        for h in &t.strip_headers {
            headers.remove(h);
        }
    }
    // Room for what is inserted below and the proxy's `Host`: one growth at most.
    headers.reserve(8);
    headers.insert(X_REQUEST_ID, request_id.clone());
    headers.insert(X_GATEWAY_VERSION, t.gateway_version.clone());
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    match host {
        Some(h) => headers.insert(X_FORWARDED_HOST, h),
        None => headers.remove(X_FORWARDED_HOST),
    };
    match peer {
        Some(ip) => headers.insert(X_REAL_IP, peer_header(ip)),
        None => headers.remove(X_REAL_IP),
    };
    if let Some(ip) = peer {
        // Every client line, in order (RFC 9110 §5.3: one comma-joined list).
        let mut prev = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        let xff = match prev.next() {
            None => Some(peer_header(ip)),
            Some(first) => {
                let mut list = first.to_owned();
                for v in prev {
                    list.push_str(", ");
                    list.push_str(v);
                }
                HeaderValue::try_from(format!("{list}, {ip}")).ok()
            }
        };
        if let Some(v) = xff {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    headers.insert(X_GATEWAY_TIMESTAMP, timestamp_header(SystemTime::now()));
}

/// Most entries of the per-thread header caches below (cleared when full).
const HEADER_CACHE: usize = 64;

thread_local! {
    /// `X-Forwarded-For` values of recent peers (a keep-alive connection sends
    /// many requests from one address).
    static PEERS: RefCell<Vec<(IpAddr, HeaderValue)>> = const { RefCell::new(Vec::new()) };
    /// `Host` values by upstream authority (the endpoints of `services.json`).
    static HOSTS: RefCell<Vec<(Authority, HeaderValue)>> = const { RefCell::new(Vec::new()) };
}

/// Looks `key` up (with `same`) in a small per-thread cache, building and
/// remembering the value on a miss. A miss costs a linear scan of at most
/// [`HEADER_CACHE`].
fn cached<K: Clone>(
    cache: &'static std::thread::LocalKey<RefCell<Vec<(K, HeaderValue)>>>,
    key: &K,
    same: impl Fn(&K, &K) -> bool,
    build: impl FnOnce() -> HeaderValue,
) -> HeaderValue {
    cache.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return build();
        };
        if let Some((_, v)) = c.iter().find(|(k, _)| same(k, key)) {
            return v.clone();
        }
        let v = build();
        if c.len() == HEADER_CACHE {
            c.clear();
        }
        c.push((key.clone(), v.clone()));
        v
    })
}

/// The `X-Forwarded-For` value for a peer without a previous hop.
fn peer_header(ip: IpAddr) -> HeaderValue {
    cached(&PEERS, &ip, IpAddr::eq, || {
        HeaderValue::try_from(ip.to_string()).unwrap_or(HeaderValue::from_static(""))
    })
}

/// Whether two authorities are equal. The balancer hands out clones of one
/// `Authority` per endpoint, so the same bytes usually answer first; `==` is a
/// case-insensitive byte loop.
fn same_authority(a: &Authority, b: &Authority) -> bool {
    let (a, b) = (a.as_str(), b.as_str());
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a.eq_ignore_ascii_case(b)
}

/// The `Host` header for an upstream URI: its host, plus the port when it is
/// not the scheme's default (what hyper's pooled client would send).
pub fn host_header(uri: &Uri) -> HeaderValue {
    let Some(authority) = uri.authority() else {
        return HeaderValue::from_static("");
    };
    cached(&HOSTS, authority, same_authority, || {
        let default_port = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        let text = match authority.port_u16() {
            Some(p) if Some(p) != default_port => format!("{}:{p}", authority.host()),
            _ => authority.host().to_owned(),
        };
        HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static(""))
    })
}

/// The upstream request target for a client URI: `/api` stripped (`/api` alone
/// becomes `/`), the query kept. One allocation; `None` if it does not parse.
pub fn upstream_path_and_query(client: &Uri) -> Option<PathAndQuery> {
    let upstream_path = match client.path().strip_prefix("/api") {
        Some("") | None => "/",
        Some(rest) => rest,
    };
    let query = client.query();
    let mut buf = BytesMut::with_capacity(upstream_path.len() + query.map_or(0, |q| q.len() + 1));
    buf.put_slice(upstream_path.as_bytes());
    if let Some(q) = query {
        buf.put_u8(b'?');
        buf.put_slice(q.as_bytes());
    }
    PathAndQuery::from_maybe_shared(buf.freeze()).ok()
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
    let raw = crate::body::read_bounded(body, cap)
        .await
        .map_err(|e| match e {
            None => WrapError::TooLarge(cap),
            Some(e) => WrapError::Body(e.to_string()),
        })?;
    Ok(wrap_bytes(raw, request_id))
}

/// Wraps a whole JSON body already read (see [`wrap_json`]).
pub fn wrap_bytes(raw: Bytes, request_id: &HeaderValue) -> Wrapped {
    if serde_json::from_slice::<&serde_json::value::RawValue>(&raw).is_err() {
        return Wrapped::NotJson(raw);
    }
    let ts = timestamp_header(SystemTime::now());
    let mut out = BytesMut::with_capacity(raw.len() + 96 + request_id.len());
    out.put_slice(b"{\"data\":");
    out.put_slice(&raw);
    out.put_slice(b",\"_meta\":{\"requestId\":\"");
    out.put_slice(request_id.as_bytes());
    out.put_slice(b"\",\"gateway\":\"nexus\",\"timestamp\":\"");
    out.put_slice(ts.as_bytes());
    out.put_slice(b"\"}}");
    Wrapped::Body(out.freeze())
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
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
            let mut h = HeaderMap::new();
            h.insert(name.clone(), HeaderValue::from_static("x"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            strip_hop_by_hop(&mut h);
            assert!(h.get(name).is_none(), "{name} must go");
            assert_eq!(h.len(), 1);
        }
        let mut h = HeaderMap::new();
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2, "nothing hop-by-hop: untouched");
    }

    #[test]
    fn forwarding_headers_cannot_be_forged() {
        let t = TransformSettings {
            gateway_version: HeaderValue::from_static("1.0.0"),
            strip_headers: Vec::new(),
            wrap_json: true,
            routes: Vec::new(),
            max_wrap_body_bytes: 1024,
        };
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "api.example"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil"),
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let rid = HeaderValue::from_static("rid");
        request_headers(&mut h, &t, &rid, Some("10.0.0.9".parse().unwrap()), None);
        assert_eq!(h["x-real-ip"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example");
        assert_eq!(h["x-forwarded-for"], "6.6.6.6, 10.0.0.9");
        assert!(h.get("forwarded").is_none() && h.get("host").is_none());
        // No Host header (HTTP/2): the authority; no peer: nothing claimed.
        let mut h = HeaderMap::new();
        h.insert("x-real-ip", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-forwarded-host", HeaderValue::from_static("evil"));
        let a: Authority = "h2.example:8443".parse().unwrap();
        request_headers(&mut h, &t, &rid, None, Some(&a));
        assert_eq!(h["x-forwarded-host"], "h2.example:8443");
        assert!(h.get("x-real-ip").is_none());
    }

    #[test]
    fn host_and_target() {
        let u: Uri = "http://127.0.0.1:3001/x".parse().unwrap();
        assert_eq!(host_header(&u), "127.0.0.1:3001");
        assert_eq!(host_header(&u), "127.0.0.1:3001"); // cached
        let u: Uri = "http://svc.local:80/x".parse().unwrap();
        assert_eq!(host_header(&u), "svc.local");
        let u: Uri = "https://svc.local:8443/x".parse().unwrap();
        assert_eq!(host_header(&u), "svc.local:8443");
        let pq = |s: &str| upstream_path_and_query(&s.parse().unwrap()).unwrap();
        assert_eq!(pq("/api/products?x=1&y"), "/products?x=1&y");
        assert_eq!(pq("/api"), "/");
        assert_eq!(pq("/api?q"), "/?q");
        assert_eq!(pq("/api/a/b"), "/a/b");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(peer_header(v4), "10.0.0.1");
        assert_eq!(peer_header("::1".parse().unwrap()), "::1");
        assert_eq!(peer_header(v4), "10.0.0.1");
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
