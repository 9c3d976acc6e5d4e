//! Endpoints: the validated description ([`EndpointSpec`]) that discovery
//! produces, and the live state ([`EndpointHandle`]) the balancer keeps per
//! endpoint — atomics only, so that picks and completions never lock.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use tokio::time::Instant;

use crate::error::ConfigError;
use crate::ewma::{Clock, PeakEwma};

/// The largest endpoint weight accepted.
pub const MAX_WEIGHT: u32 = 1_000;

/// A validated endpoint: `http(s)://host:port` and a weight in
/// `1..=`[`MAX_WEIGHT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    url: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    weight: NonZeroU32,
}

impl EndpointSpec {
    /// Validates `url` and `weight`.
    ///
    /// The URL must have an `http` or `https` scheme, a host and an explicit
    /// or default port, and no path (a trailing `/` is accepted), query or
    /// user info. It is normalised to `scheme://authority`.
    pub fn new(url: &str, weight: u32) -> Result<Self, ConfigError> {
        let bad = |reason| ConfigError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URI"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| bad("missing scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("scheme must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad("missing host"))?;
        if authority.host().is_empty() {
            return Err(bad("missing host"));
        }
        if authority.as_str().contains('@') {
            return Err(bad("user info is not allowed"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("path and query are not allowed"));
        }
        let weight = NonZeroU32::new(weight)
            .filter(|w| w.get() <= MAX_WEIGHT)
            .ok_or(ConfigError::InvalidWeight {
                url: url.to_owned(),
                weight: u64::from(weight),
                max: MAX_WEIGHT,
            })?;
        Ok(Self {
            url: format!("{scheme}://{authority}").into(),
            scheme,
            authority,
            weight,
        })
    }

    /// The normalised URL, `scheme://authority`; the endpoint's identity.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URI authority requests are sent to.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The URI scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// The weight.
    pub fn weight(&self) -> u32 {
        self.weight.get()
    }
}

/// Live state of one endpoint.
pub(crate) struct Endpoint {
    pub(crate) id: u64,
    pub(crate) url: Arc<str>,
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) weight: AtomicU32,
    pub(crate) in_flight: AtomicU32,
    pub(crate) handled: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) ewma: PeakEwma,
    /// Passive health: the endpoint's circuit breaker is open.
    pub(crate) circuit_open: AtomicBool,
    /// Bumped on every circuit report, so a stale readmission timer is ignored.
    pub(crate) circuit_gen: AtomicU64,
    /// Active health: the last probes crossed the healthy threshold.
    pub(crate) probe_healthy: AtomicBool,
    pub(crate) clock: Clock,
    pub(crate) ewma_cfg: EwmaSettings,
}

/// EWMA parameters copied into each endpoint (so a guard needs no pointer
/// back to the balancer).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EwmaSettings {
    pub(crate) decay_ms: f32,
    pub(crate) failure_penalty: Duration,
}

impl Endpoint {
    pub(crate) fn new(
        id: u64,
        spec: &EndpointSpec,
        clock: Clock,
        default_rtt: Duration,
        ewma_cfg: EwmaSettings,
    ) -> Self {
        Self {
            id,
            url: spec.url.clone(),
            scheme: spec.scheme.clone(),
            authority: spec.authority.clone(),
            weight: AtomicU32::new(spec.weight()),
            in_flight: AtomicU32::new(0),
            handled: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ewma: PeakEwma::new(default_rtt, clock.now_ms()),
            circuit_open: AtomicBool::new(false),
            circuit_gen: AtomicU64::new(0),
            probe_healthy: AtomicBool::new(true),
            clock,
            ewma_cfg,
        }
    }

    pub(crate) fn is_available(&self) -> bool {
        !self.circuit_open.load(Ordering::Acquire) && self.probe_healthy.load(Ordering::Acquire)
    }
}

/// A shared handle on one endpoint's live state, as returned by a pick.
///
/// Cloning is one reference-count increment. The handle stays valid after
/// the endpoint leaves the set (its counters simply stop being reported).
#[derive(Clone)]
pub struct EndpointHandle(pub(crate) Arc<Endpoint>);

impl fmt::Debug for EndpointHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("id", &self.0.id)
            .field("url", &self.0.url)
            .finish()
    }
}

impl EndpointHandle {
    /// Process-unique identity of this endpoint (stable across reloads that
    /// keep the endpoint; a removed and re-added URL gets a new id).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The normalised URL, `scheme://authority`.
    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// Shared copy of the URL.
    pub fn url_arc(&self) -> Arc<str> {
        self.0.url.clone()
    }

    /// The authority requests are routed to.
    pub fn authority(&self) -> &Authority {
        &self.0.authority
    }

    /// The scheme requests are routed with.
    pub fn scheme(&self) -> &Scheme {
        &self.0.scheme
    }

    /// The current weight.
    pub fn weight(&self) -> u32 {
        self.0.weight.load(Ordering::Relaxed)
    }

    /// Requests started and not yet completed.
    pub fn in_flight(&self) -> u32 {
        self.0.in_flight.load(Ordering::Relaxed)
    }

    /// Whether the endpoint is in rotation (circuit not open, probes healthy).
    pub fn is_available(&self) -> bool {
        self.0.is_available()
    }

    /// Starts one request: counts it in flight until the returned guard is
    /// dropped. Record its latency with [`InFlight::record_response`] or
    /// [`InFlight::record_failure`].
    pub fn start(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            endpoint: self.0.clone(),
            started: Instant::now(),
        }
    }
}

/// RAII in-flight accounting for one request to one endpoint.
///
/// Dropping it decrements the endpoint's in-flight count and counts the
/// request as handled. [`Lb`](crate::Lb) keeps it inside the response body,
/// so a request stays in flight until its body is complete or dropped.
#[derive(Debug)]
pub struct InFlight {
    endpoint: Arc<Endpoint>,
    started: Instant,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// Feeds the time since [`EndpointHandle::start`] into the endpoint's
    /// peak-EWMA latency (call when the response head arrives).
    pub fn record_response(&self) {
        let e = &self.endpoint;
        e.ewma.observe(
            self.started.elapsed(),
            e.clock.now_ms(),
            e.ewma_cfg.decay_ms,
        );
    }

    /// Counts a failure and feeds `max(elapsed, failure_penalty)` into the
    /// latency estimate, so that an endpoint that fails fast (connection
    /// refused) does not look like the fastest one to P2C.
    pub fn record_failure(&self) {
        let e = &self.endpoint;
        e.failed.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let ms = e.clock.ms_at(now);
        let rtt = now
            .saturating_duration_since(self.started)
            .max(e.ewma_cfg.failure_penalty);
        e.ewma.observe(rtt, ms, e.ewma_cfg.decay_ms);
        e.clock.touch(ms);
    }

    /// Counts a failure that came after the response head was recorded (a
    /// response body that failed mid-stream) and feeds `failure_penalty` into
    /// the peak-EWMA latency, not the request's age: a long stream that fails
    /// after minutes says the endpoint failed, not that it is minutes slow.
    pub fn record_failure_after_response(&self) {
        let e = &self.endpoint;
        e.failed.fetch_add(1, Ordering::Relaxed);
        let ms = e.clock.now_ms();
        e.ewma
            .observe(e.ewma_cfg.failure_penalty, ms, e.ewma_cfg.decay_ms);
        e.clock.touch(ms);
    }

    /// The endpoint this request went to.
    pub fn endpoint(&self) -> EndpointHandle {
        EndpointHandle(self.endpoint.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.endpoint.handled.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_validated_and_normalised() {
        let ok = EndpointSpec::new("http://127.0.0.1:3001/", 2).unwrap();
        assert_eq!(ok.url(), "http://127.0.0.1:3001");
        assert_eq!(ok.weight(), 2);
        for bad in [
            "127.0.0.1:3001",
            "ftp://h:1",
            "http://h:1/api",
            "http://h:1/?q=1",
            "http://u:p@h:1",
            "not a url",
            "",
        ] {
            assert!(
                matches!(
                    EndpointSpec::new(bad, 1),
                    Err(ConfigError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            EndpointSpec::new("http://h:1", 0),
            Err(ConfigError::InvalidWeight { .. })
        ));
        assert!(EndpointSpec::new("http://h:1", MAX_WEIGHT + 1).is_err());
    }
}
