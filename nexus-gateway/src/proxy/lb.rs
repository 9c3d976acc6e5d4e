//! [`Upstreams`] over `nexus-lb`: the configured strategy, `services.json`
//! discovery (polled; endpoints it removes are reported to a hook, see
//! [`LbUpstreams::on_removed`]), passive health from circuit state,
//! `/lb-stats`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::StreamExt as _;

use nexus_lb::{Balancer, CircuitState, EndpointSpec, Exclude, InFlight};

use super::seams::{AttemptGuard, AttemptOutcome, Picked, Upstreams};
use crate::config::{ConfigError, ProxySettings, Strategy};

/// Called with each endpoint URL that a discovery change removed.
type RemovedHook = Box<dyn Fn(&Arc<str>) + Send + Sync>;

/// Where the discovery task finds the hook (set after start, see
/// [`LbUpstreams::on_removed`]).
type HookSlot = Arc<RwLock<Option<RemovedHook>>>;

/// A `nexus-lb` balancer fed by a `services.json` watcher.
pub struct LbUpstreams {
    balancer: Balancer,
    removed_hook: HookSlot,
    _discovery: Discovery,
}

impl std::fmt::Debug for LbUpstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbUpstreams")
            .field("balancer", &self.balancer)
            .finish_non_exhaustive()
    }
}

/// The discovery task: stopped when dropped.
struct Discovery(tokio::task::JoinHandle<()>);

impl Drop for Discovery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Applies each endpoint set to the balancer (an invalid one is logged and
/// skipped, keeping the previous set) and tells the hook which URLs left.
async fn follow(
    balancer: Balancer,
    stream: impl futures_util::Stream<Item = Vec<EndpointSpec>>,
    hook: HookSlot,
) {
    let mut stream = std::pin::pin!(stream);
    while let Some(set) = stream.next().await {
        let before: Vec<Arc<str>> = balancer.endpoints().iter().map(|e| e.url_arc()).collect();
        match balancer.set_endpoints(&set) {
            Ok(change) if !change.is_empty() => {
                tracing::info!(
                    added = change.added,
                    removed = change.removed,
                    reweighted = change.reweighted,
                    total = set.len(),
                    "endpoint set updated"
                );
                if change.removed == 0 {
                    continue;
                }
                let hook = hook
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(hook) = hook.as_ref() {
                    let now = balancer.endpoints();
                    let now: hashbrown::HashSet<&str> = now.iter().map(|e| e.url()).collect();
                    for url in before.iter().filter(|u| !now.contains(&***u)) {
                        hook(url);
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "ignoring invalid endpoint set; keeping the previous one");
            }
        }
    }
}

/// [`Balancer`] lookups by URL.
trait ContainsUrl {
    fn contains_url(&self, url: &str) -> bool;
}

impl ContainsUrl for Balancer {
    fn contains_url(&self, url: &str) -> bool {
        self.endpoints().iter().any(|e| e.url() == url)
    }
}

impl LbUpstreams {
    /// Reads `services_file` once (an unreadable or invalid file is an error
    /// naming the field), then follows it every `discovery_poll`. Must run
    /// inside a tokio runtime.
    pub fn start(p: &ProxySettings) -> Result<Self, ConfigError> {
        let strategy = match p.strategy {
            Strategy::RoundRobin => nexus_lb::Strategy::RoundRobin,
            Strategy::LeastOutstanding => nexus_lb::Strategy::LeastOutstanding,
            Strategy::WeightedRoundRobin => nexus_lb::Strategy::WeightedRoundRobin,
            Strategy::P2cEwma => nexus_lb::Strategy::P2cPeakEwma,
        };
        let balancer = Balancer::builder()
            .strategy(strategy)
            .build()
            .map_err(|e| ConfigError::invalid("proxy.strategy", e.to_string()))?;
        let text = std::fs::read(&p.services_file).map_err(|source| ConfigError::Read {
            field: "proxy.services_file",
            path: p.services_file.clone(),
            source,
        })?;
        let specs = nexus_lb::discover::parse_services(&text)
            .map_err(|e| ConfigError::invalid("proxy.services_file", e.to_string()))?;
        plain_http(&specs).map_err(|e| ConfigError::invalid("proxy.services_file", e))?;
        balancer
            .set_endpoints(&specs)
            .map_err(|e| ConfigError::invalid("proxy.services_file", e.to_string()))?;
        let file = p.services_file.clone();
        let stream = nexus_lb::discover::watch_services_file(file.clone(), p.discovery_poll)
            .filter(move |specs| {
                let ok = plain_http(specs)
                    .map_err(|e| {
                        tracing::warn!(file = %file, error = %e, "services file refused; keeping the current endpoints");
                    })
                    .is_ok();
                std::future::ready(ok)
            });
        let removed_hook: HookSlot = Arc::new(RwLock::new(None));
        let discovery = Discovery(tokio::spawn(follow(
            balancer.clone(),
            stream,
            Arc::clone(&removed_hook),
        )));
        Ok(Self {
            balancer,
            removed_hook,
            _discovery: discovery,
        })
    }

    /// Calls `hook` with each endpoint URL a later change of `services.json`
    /// removes (the gateway drops its breaker and metric series). Replaces
    /// a previous hook. The hook runs on the discovery task: it must not
    /// block, and should hold only weak references to anything that holds
    /// this balancer.
    pub fn on_removed(&self, hook: impl Fn(&Arc<str>) + Send + Sync + 'static) {
        let mut slot = self
            .removed_hook
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(Box::new(hook));
    }

    /// The balancer (for embedding: active health checks, custom discovery).
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}

/// Parses the seed's `services.json` with `nexus-lb`'s validation, and
/// refuses `https` endpoints: the upstream client has no TLS.
pub fn parse_services(text: &str) -> Result<Vec<EndpointSpec>, String> {
    let specs = nexus_lb::discover::parse_services(text.as_bytes()).map_err(|e| e.to_string())?;
    plain_http(&specs)?;
    Ok(specs)
}

/// The upstream client speaks plain HTTP only (no TLS connector), so an
/// `https` endpoint could never be reached: refused, naming it.
fn plain_http(specs: &[EndpointSpec]) -> Result<(), String> {
    match specs.iter().find(|s| s.url().starts_with("https:")) {
        Some(s) => Err(format!(
            "endpoint {}: https is not supported (the upstream client has no TLS); use http://",
            s.url()
        )),
        None => Ok(()),
    }
}

struct Guard(InFlight);

impl AttemptGuard for Guard {
    // Dropping the guard (its `InFlight`) ends the attempt (in-flight count,
    // handled count); `InFlight` measures the latency itself.
    fn record(&mut self, outcome: AttemptOutcome, _latency: Duration) {
        match outcome {
            AttemptOutcome::Success => self.0.record_response(),
            AttemptOutcome::Failure => self.0.record_failure(),
            AttemptOutcome::BodyFailure => self.0.record_failure_after_response(),
            AttemptOutcome::Ignored => {}
        }
    }
}

impl Upstreams for LbUpstreams {
    fn pick(&self, exclude: &[u64]) -> Option<Picked> {
        let mut ex = Exclude::new();
        for id in exclude {
            ex.insert(*id);
        }
        let e = self.balancer.pick_excluding(&ex)?;
        Some(Picked {
            id: e.id(),
            url: e.url_arc(),
            scheme: e.scheme().clone(),
            authority: e.authority().clone(),
            guard: Box::new(Guard(e.start())),
        })
    }

    fn circuit_changed(&self, url: &str, open: bool) {
        let state = if open {
            CircuitState::Open
        } else {
            CircuitState::HalfOpen
        };
        self.balancer.set_circuit_state(url, state);
    }

    fn stats(&self) -> serde_json::Value {
        serde_json::to_value(self.balancer.stats()).unwrap_or_default()
    }

    fn contains(&self, url: &str) -> bool {
        self.balancer.contains_url(url)
    }
}
