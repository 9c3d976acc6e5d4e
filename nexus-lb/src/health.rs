//! Active health checks: probe every endpoint periodically and take it out
//! of rotation after `unhealthy_threshold` consecutive failures, back in
//! after `healthy_threshold` consecutive successes.
//!
//! Endpoints start healthy (in rotation) when they are added. Passive health
//! (circuit breakers) is separate: see
//! [`Balancer::set_circuit_state`](crate::Balancer::set_circuit_state); an
//! endpoint is in rotation only when both agree.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::ConfigError;
use crate::task::TaskHandle;
use crate::{Balancer, EndpointHandle};

/// Active health-check settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Time between rounds (default 5 s).
    pub interval: Duration,
    /// Time allowed for one probe (default 1 s); a late answer is a failure.
    pub timeout: Duration,
    /// Consecutive successes that bring an unhealthy endpoint back (default 2).
    pub healthy_threshold: NonZeroU32,
    /// Consecutive failures that take an endpoint out (default 3).
    pub unhealthy_threshold: NonZeroU32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: NonZeroU32::new(2).unwrap_or(NonZeroU32::MIN),
            unhealthy_threshold: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
        }
    }
}

impl HealthConfig {
    /// Checks the fields; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(10) {
            return Err(ConfigError::Invalid {
                field: "interval",
                reason: "must be at least 10 ms",
            });
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            return Err(ConfigError::Invalid {
                field: "timeout",
                reason: "must be positive and at most the interval",
            });
        }
        Ok(())
    }
}

/// Checks one endpoint; `true` means healthy.
pub trait Probe: Send + Sync + 'static {
    /// Probes `endpoint`. The checker bounds it with its timeout.
    fn probe(&self, endpoint: &EndpointHandle) -> impl Future<Output = bool> + Send;
}

/// `GET <endpoint><path>` over HTTP/1.1; healthy on a 2xx status.
///
/// Plain `http` only (no TLS connector); implement [`Probe`] for `https`
/// endpoints.
#[derive(Debug, Clone)]
pub struct HttpProbe {
    client: Client<HttpConnector, Empty<Bytes>>,
    path: PathAndQuery,
}

impl HttpProbe {
    /// A probe requesting `path` (e.g. `"/health"`).
    pub fn new(path: &str) -> Result<Self, ConfigError> {
        let path = path
            .parse::<PathAndQuery>()
            .ok()
            .filter(|p| p.as_str().starts_with('/'))
            .ok_or(ConfigError::Invalid {
                field: "path",
                reason: "must be an absolute path such as /health",
            })?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Self { client, path })
    }
}

impl Probe for HttpProbe {
    fn probe(&self, endpoint: &EndpointHandle) -> impl Future<Output = bool> + Send {
        let uri = http::Uri::builder()
            .scheme(endpoint.scheme().clone())
            .authority(endpoint.authority().clone())
            .path_and_query(self.path.clone())
            .build();
        let client = self.client.clone();
        async move {
            let Ok(uri) = uri else { return false };
            match client.get(uri).await {
                Ok(resp) => resp.status().is_success(),
                Err(_) => false,
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    ok: u32,
    fail: u32,
}

/// Starts active health checks of `balancer`'s endpoints with `probe`.
///
/// Every `interval` all current endpoints are probed concurrently. The
/// per-endpoint streak table is pruned to the current set each round, so it
/// is bounded by [`MAX_ENDPOINTS`](crate::MAX_ENDPOINTS).
pub fn spawn_health_checks<P: Probe>(
    balancer: &Balancer,
    config: HealthConfig,
    probe: P,
) -> Result<TaskHandle, ConfigError> {
    config.validate()?;
    let balancer = balancer.clone();
    Ok(TaskHandle::new(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut streaks: HashMap<u64, Streak> = HashMap::new();
        loop {
            ticker.tick().await;
            let endpoints = balancer.endpoints();
            let results = futures_util::future::join_all(endpoints.iter().map(|e| async {
                tokio::time::timeout(config.timeout, probe.probe(e))
                    .await
                    .unwrap_or(false)
            }))
            .await;
            streaks.retain(|id, _| endpoints.iter().any(|e| e.id() == *id));
            for (e, ok) in endpoints.iter().zip(results) {
                let s = streaks.entry(e.id()).or_default();
                if ok {
                    s.ok = s.ok.saturating_add(1);
                    s.fail = 0;
                    if s.ok >= config.healthy_threshold.get() {
                        balancer.set_probe_health(e.id(), true);
                    }
                } else {
                    s.fail = s.fail.saturating_add(1);
                    s.ok = 0;
                    if s.fail >= config.unhealthy_threshold.get() {
                        balancer.set_probe_health(e.id(), false);
                    }
                }
            }
        }
    })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{EndpointSpec, Strategy};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Clone)]
    struct Switch(Arc<AtomicBool>);

    impl Probe for Switch {
        fn probe(&self, _: &EndpointHandle) -> impl Future<Output = bool> + Send {
            let ok = self.0.load(Ordering::SeqCst);
            async move { ok }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn thresholds_take_endpoints_out_and_back() {
        let lb = Balancer::new(Strategy::RoundRobin);
        lb.set_endpoints(&[EndpointSpec::new("http://a:1", 1).unwrap()])
            .unwrap();
        let up = Arc::new(AtomicBool::new(false));
        let cfg = HealthConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            ..HealthConfig::default()
        };
        let _task = spawn_health_checks(&lb, cfg, Switch(up.clone())).unwrap();
        // Rounds run at t=0,1,2: the third failure takes it out.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(lb.available(), 1, "two failures are below the threshold");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(lb.available(), 0);
        assert!(lb.pick().is_none());
        assert!(!lb.stats().endpoints[0].healthy);

        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(lb.available(), 0, "one success is below the threshold");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(lb.available(), 1);
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(HttpProbe::new("health").is_err());
        let cfg = HealthConfig {
            timeout: Duration::from_secs(10),
            ..HealthConfig::default()
        };
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Invalid {
                field: "timeout",
                ..
            })
        ));
    }
}
