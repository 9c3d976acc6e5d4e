//! Which bucket a request draws from: keys and key extractors.

use std::hash::Hash;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request};

/// A value that names a bucket.
///
/// [`to_stored`](Self::to_stored) makes the copy kept in the limiter's table;
/// override it when a key may borrow a large buffer (as [`HeaderKey`] does,
/// whose bytes can share hyper's whole read buffer).
pub trait LimitKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The copy to keep in the table; by default a clone.
    fn to_stored(&self) -> Self {
        self.clone()
    }
}

impl LimitKey for IpAddr {}
impl LimitKey for String {}
impl LimitKey for Arc<str> {}
impl LimitKey for Box<str> {}
impl LimitKey for u8 {}
impl LimitKey for u16 {}
impl LimitKey for u32 {}
impl LimitKey for u64 {}
impl LimitKey for u128 {}
impl LimitKey for &'static str {}
impl LimitKey for Box<[u8]> {}
impl LimitKey for Vec<u8> {}

/// Raw bytes of a header value, used as a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderKey(HeaderValue);

impl HeaderKey {
    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl LimitKey for HeaderKey {
    fn to_stored(&self) -> Self {
        // Detach from the request's buffer so a stored key costs only its length.
        let copy = HeaderValue::from_maybe_shared(Bytes::copy_from_slice(self.0.as_bytes()));
        HeaderKey(copy.unwrap_or_else(|_| self.0.clone()))
    }
}

/// Chooses the key of a request, or `None` when it has none.
///
/// Implement it to plug in any key (an API key table lookup, a tenant id, a
/// combination); the built-ins are [`PeerIp`], [`FromHeader`] and
/// [`FromExtension`].
pub trait KeyExtractor: Clone + Send + Sync + 'static {
    /// The key type.
    type Key: LimitKey;

    /// The key of `req`.
    fn extract<B>(&self, req: &Request<B>) -> Option<Self::Key>;
}

/// The client's IP address.
///
/// The address of the TCP peer comes from the request extensions: a
/// `SocketAddr`, or (feature `axum`) axum's `ConnectInfo<SocketAddr>` as set by
/// `into_make_service_with_connect_info`. With `trusted_proxies = n > 0`, the
/// peer is one of `n` proxies we trust, each of which *appended* the address it
/// received from to `X-Forwarded-For`; the client is then the `n`-th entry from
/// the right. Entries further left were written by the client and are never
/// used. If the header has fewer than `n` entries, the leftmost one (still
/// written by a trusted proxy) is used; if it is missing or that entry is not
/// an IP address, the TCP peer is used.
///
/// IPv4-mapped IPv6 addresses are canonicalised, and IPv6 addresses are
/// truncated to a prefix (default /64, what one subscriber usually gets) so
/// that one host cannot mint fresh keys from its own subnet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIp {
    trusted_proxies: usize,
    ipv6_prefix: u8,
}

impl PeerIp {
    /// The TCP peer's address, no proxy trusted, IPv6 grouped by /64.
    pub const fn new() -> Self {
        Self {
            trusted_proxies: 0,
            ipv6_prefix: 64,
        }
    }

    /// Trusts `n` proxies in front of this service (see the type docs).
    pub const fn trusted_proxies(mut self, n: usize) -> Self {
        self.trusted_proxies = n;
        self
    }

    /// Groups IPv6 clients by their first `bits` bits (clamped to 128).
    pub const fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.ipv6_prefix = if bits > 128 { 128 } else { bits };
        self
    }

    fn normalise(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(u32::from(128 - self.ipv6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
            v4 => v4,
        }
    }

    fn forwarded<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        let n = self.trusted_proxies;
        let mut seen = 0;
        let mut leftmost = None;
        for value in req.headers().get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(text) = value.to_str() else {
                return None;
            };
            for entry in text.rsplit(',') {
                seen += 1;
                if seen == n {
                    return parse_ip(entry);
                }
                leftmost = Some(entry);
            }
        }
        leftmost.and_then(parse_ip)
    }
}

impl Default for PeerIp {
    fn default() -> Self {
        Self::new()
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Parses `1.2.3.4`, `1.2.3.4:80`, `::1` or `[::1]:80`.
fn parse_ip(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The TCP peer as put in the extensions by the server.
pub(crate) fn peer_addr(ext: &http::Extensions) -> Option<SocketAddr> {
    if let Some(addr) = ext.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = ext.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    None
}

impl PeerIp {
    /// The key of `req` whose TCP peer is `peer`, for a server that keeps the
    /// peer somewhere other than the extensions [`extract`](KeyExtractor::extract)
    /// reads (the same rules otherwise).
    pub fn key_with_peer<B>(&self, req: &Request<B>, peer: Option<IpAddr>) -> Option<IpAddr> {
        let ip = if self.trusted_proxies > 0 {
            self.forwarded(req).or(peer)
        } else {
            peer
        }?;
        Some(self.normalise(ip))
    }
}

impl KeyExtractor for PeerIp {
    type Key = IpAddr;

    fn extract<B>(&self, req: &Request<B>) -> Option<IpAddr> {
        self.key_with_peer(req, peer_addr(req.extensions()).map(|a| a.ip()))
    }
}

/// The value of one request header (for example an API key), at most
/// `max_len` bytes (default 256); a longer or missing value gives no key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromHeader {
    name: HeaderName,
    max_len: usize,
}

impl FromHeader {
    /// Keys requests by header `name`.
    pub fn new(name: HeaderName) -> Self {
        Self { name, max_len: 256 }
    }

    /// Ignores values longer than `max_len` bytes (they bound the memory a
    /// stored key may hold).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }
}

impl KeyExtractor for FromHeader {
    type Key = HeaderKey;

    fn extract<B>(&self, req: &Request<B>) -> Option<HeaderKey> {
        let value = req.headers().get(&self.name)?;
        if value.len() > self.max_len || value.is_empty() {
            return None;
        }
        // Shares the request's buffer; `to_stored` copies only on insert.
        Some(HeaderKey(value.clone()))
    }
}

/// A value of type `T` that an earlier layer stored in the request extensions
/// (for example the JWT subject an auth layer inserted).
pub struct FromExtension<T>(PhantomData<fn() -> T>);

impl<T> FromExtension<T> {
    /// Keys requests by their `T` extension.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for FromExtension<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for FromExtension<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for FromExtension<T> {}

impl<T> std::fmt::Debug for FromExtension<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FromExtension<")?;
        f.write_str(std::any::type_name::<T>())?;
        f.write_str(">")
    }
}

impl<T: LimitKey> KeyExtractor for FromExtension<T> {
    type Key = T;

    fn extract<B>(&self, req: &Request<B>) -> Option<T> {
        req.extensions().get::<T>().cloned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn req(peer: &str, xff: &[&str]) -> Request<()> {
        let mut b = Request::get("/");
        for v in xff {
            b = b.header("x-forwarded-for", *v);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut()
            .insert(peer.parse::<SocketAddr>().unwrap());
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn no_trusted_proxy_ignores_forwarded_for() {
        let r = req("10.0.0.1:1", &["6.6.6.6"]);
        assert_eq!(PeerIp::new().extract(&r), Some(ip("10.0.0.1")));
    }

    #[test]
    fn trusted_depth_picks_nth_from_right() {
        let r = req("10.0.0.1:1", &["6.6.6.6, 1.2.3.4", "192.168.1.1"]);
        let one = PeerIp::new().trusted_proxies(1);
        let two = PeerIp::new().trusted_proxies(2);
        assert_eq!(one.extract(&r), Some(ip("192.168.1.1")));
        assert_eq!(two.extract(&r), Some(ip("1.2.3.4")));
        // The spoofable leftmost entry is only used when all are trusted.
        let five = PeerIp::new().trusted_proxies(5);
        assert_eq!(five.extract(&r), Some(ip("6.6.6.6")));
    }

    #[test]
    fn garbage_or_missing_forwarded_for_falls_back_to_peer() {
        let p = PeerIp::new().trusted_proxies(1);
        assert_eq!(p.extract(&req("10.0.0.1:1", &[])), Some(ip("10.0.0.1")));
        assert_eq!(
            p.extract(&req("10.0.0.1:1", &["not-an-ip"])),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            p.extract(&req("10.0.0.1:1", &["[2001:db8::1]:443"])),
            Some(ip("2001:db8::"))
        );
        assert_eq!(
            p.extract(&req("10.0.0.1:1", &["1.2.3.4:80"])),
            Some(ip("1.2.3.4"))
        );
    }

    #[test]
    fn ipv6_grouped_by_prefix_and_mapped_v4_canonicalised() {
        let r = req("[2001:db8:1:2:3:4:5:6]:1", &[]);
        assert_eq!(PeerIp::new().extract(&r), Some(ip("2001:db8:1:2::")));
        assert_eq!(
            PeerIp::new().ipv6_prefix(128).extract(&r),
            Some(ip("2001:db8:1:2:3:4:5:6"))
        );
        assert_eq!(PeerIp::new().ipv6_prefix(0).extract(&r), Some(ip("::")));
        let r = req("[::ffff:1.2.3.4]:1", &[]);
        assert_eq!(PeerIp::new().extract(&r), Some(ip("1.2.3.4")));
    }

    #[test]
    fn no_peer_no_key() {
        let r = Request::get("/").body(()).unwrap();
        assert_eq!(PeerIp::new().extract(&r), None);
    }

    #[test]
    fn header_and_extension_keys() {
        let h = FromHeader::new(HeaderName::from_static("x-api-key")).max_len(4);
        let r = Request::get("/")
            .header("x-api-key", "abcd")
            .body(())
            .unwrap();
        assert_eq!(h.extract(&r).unwrap().as_bytes(), b"abcd");
        let r = Request::get("/")
            .header("x-api-key", "abcde")
            .body(())
            .unwrap();
        assert_eq!(h.extract(&r), None);
        let mut r = Request::get("/").body(()).unwrap();
        assert_eq!(FromExtension::<String>::new().extract(&r), None);
        r.extensions_mut().insert("alice".to_owned());
        assert_eq!(
            FromExtension::<String>::new().extract(&r),
            Some("alice".to_owned())
        );
    }
}
