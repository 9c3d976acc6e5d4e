//! The rate-limit stage: `nexus-ratelimit`'s keyed GCRA layer, keyed by peer IP or
//! a header, with a reject hook that counts `nexus_rate_limit_hits_total` and emits
//! `gateway.rate_limit.hit`.

use std::sync::Arc;
use std::time::Duration;

use nexus_ratelimit::{
    FromHeader, KeyExtractor, KeyedLimiter, LimiterConfig, PeerIp, Quota, RateLimit,
    RateLimitLayer, Rejection,
};
use tower::util::Either;
use tower_layer::Layer as _;

use crate::config::{ConfigError, RateLimitKey, RateLimitSettings};
use crate::events::{EventSink, GatewayEvent};
use crate::layers::RequestContext;
use crate::metrics::Metrics;

/// How often idle limiter keys are evicted.
const HOUSEKEEPING: Duration = Duration::from_secs(30);

/// Keeps the limiter's housekeeping task alive.
pub(crate) type Housekeeper = nexus_ratelimit::Housekeeper;

fn hook<K>(
    metrics: Arc<Metrics>,
    events: Arc<dyn EventSink>,
) -> impl Fn(&Rejection<'_, K>) + Send + Sync + 'static {
    move |r: &Rejection<'_, K>| {
        let ip = crate::layers::peer_addr(r.extensions).map(|a| a.ip());
        metrics.rate_limited(ip);
        events.emit(GatewayEvent::RateLimitHit {
            ip,
            method: r.method.to_string(),
            url: r.uri.path().to_owned(),
            correlation_id: r
                .extensions
                .get::<RequestContext>()
                .and_then(|c| c.request_id.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        });
    }
}

/// The limiter around `S`, keyed by peer IP or by a header (a concrete type,
/// so that no request pays for a boxed service or future here).
pub(crate) type Limited<S> = Either<RateLimit<S, ContextPeerIp>, RateLimit<S, FromHeader>>;

/// [`PeerIp`] with the peer taken from the [`RequestContext`](crate::layers::RequestContext)
/// (or a `SocketAddr` extension), see [`crate::layers::peer_addr`]; without
/// either, `PeerIp`'s own rules (which also read axum's `ConnectInfo<SocketAddr>`),
/// so such clients do not all share one bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContextPeerIp(PeerIp);

impl KeyExtractor for ContextPeerIp {
    type Key = std::net::IpAddr;

    fn extract<B>(&self, req: &http::Request<B>) -> Option<std::net::IpAddr> {
        match crate::layers::peer_addr(req.extensions()) {
            Some(peer) => self.0.key_with_peer(req, Some(peer.ip())),
            None => self.0.extract(req),
        }
    }
}

fn wrap<S, E: KeyExtractor>(
    inner: S,
    cfg: LimiterConfig,
    extractor: E,
    metrics: Arc<Metrics>,
    events: Arc<dyn EventSink>,
) -> Result<(RateLimit<S, E>, Housekeeper), ConfigError> {
    let limiter = KeyedLimiter::new(cfg);
    let housekeeper = limiter.spawn_housekeeper(HOUSEKEEPING);
    let layer = RateLimitLayer::builder(limiter, extractor)
        .on_reject(hook::<E::Key>(metrics, events))
        .policy_name("gateway")
        .build()
        .map_err(|e| ConfigError::invalid("rate_limit", e.to_string()))?;
    Ok((layer.layer(inner), housekeeper))
}

/// Wraps `inner` in the configured limiter (must run inside a tokio runtime).
pub(crate) fn layer<S>(
    inner: S,
    rl: &RateLimitSettings,
    metrics: Arc<Metrics>,
    events: Arc<dyn EventSink>,
) -> Result<(Limited<S>, Housekeeper), ConfigError> {
    let cfg = LimiterConfig::new(Quota::per_second(rl.capacity, rl.refill_per_sec))
        .with_max_keys(rl.max_keys);
    match &rl.key {
        RateLimitKey::Ip => {
            let (svc, hk) = wrap(inner, cfg, ContextPeerIp(PeerIp::new()), metrics, events)?;
            Ok((Either::Left(svc), hk))
        }
        RateLimitKey::Header(name) => {
            let name = http::HeaderName::try_from(name.as_str())
                .map_err(|_| ConfigError::invalid("rate_limit.key.header", "not a header name"))?;
            let (svc, hk) = wrap(inner, cfg, FromHeader::new(name), metrics, events)?;
            Ok((Either::Right(svc), hk))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::net::{IpAddr, SocketAddr};

    use super::*;
    use crate::layers::RequestContext;
    use crate::path::Route;

    #[test]
    fn peer_key_comes_from_the_context_or_the_socket_addr_extension() {
        let key = ContextPeerIp(PeerIp::new());
        let peer: SocketAddr = "[2001:db8::1:2:3:4]:5000".parse().unwrap();
        let mut req = http::Request::new(());
        assert_eq!(key.extract(&req), None);
        req.extensions_mut().insert(RequestContext {
            route: Route::Api,
            request_id: http::HeaderValue::from_static("r"),
            principal: None,
            peer: Some(peer),
        });
        let grouped: IpAddr = "2001:db8::".parse().unwrap();
        assert_eq!(key.extract(&req), Some(grouped), "IPv6 grouped by /64");
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert::<SocketAddr>("10.1.2.3:9".parse().unwrap());
        assert_eq!(key.extract(&req), Some("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn peer_key_falls_back_to_axum_connect_info() {
        let key = ContextPeerIp(PeerIp::new());
        let info = axum::extract::ConnectInfo::<SocketAddr>("10.9.8.7:1".parse().unwrap());
        let mut req = http::Request::new(());
        req.extensions_mut().insert(info);
        assert_eq!(key.extract(&req), Some("10.9.8.7".parse().unwrap()));
        // A context without a peer (the entry layer did not know it) does not
        // hide the `ConnectInfo` either.
        req.extensions_mut().insert(RequestContext {
            route: Route::Api,
            request_id: http::HeaderValue::from_static("r"),
            principal: None,
            peer: None,
        });
        assert_eq!(key.extract(&req), Some("10.9.8.7".parse().unwrap()));
    }
}
