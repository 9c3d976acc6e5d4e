//! STAND-IN round-robin pool over `services.json`, used until `nexus-lb` is wired
//! in. Round robin only (the configured strategy is ignored), polled file
//! discovery, passive health from circuit state. Kept small on purpose.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use serde::Deserialize;

use super::seams::{AttemptGuard, AttemptOutcome, Picked, Upstreams};

/// One `services.json` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// Base URL, e.g. `http://127.0.0.1:3001`.
    pub url: String,
    /// Weight (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServicesFile {
    services: Vec<ServiceEntry>,
}

/// Parses the seed's `services.json` and checks every URL.
pub fn parse_services(text: &str) -> Result<Vec<ServiceEntry>, String> {
    let f: ServicesFile = serde_json::from_str(text).map_err(|e| format!("services.json: {e}"))?;
    for (i, s) in f.services.iter().enumerate() {
        split_url(&s.url)
            .ok_or_else(|| format!("services[{i}].url: {:?} is not http://host:port", s.url))?;
    }
    Ok(f.services)
}

fn split_url(url: &str) -> Option<(Scheme, Authority)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme().cloned()?;
    if scheme != Scheme::HTTP {
        return None;
    }
    let path_ok = uri.path() == "/" || uri.path().is_empty();
    Some((scheme, uri.authority().cloned()?)).filter(|_| path_ok)
}

#[derive(Debug)]
struct Ep {
    id: u64,
    url: Arc<str>,
    scheme: Scheme,
    authority: Authority,
    open: std::sync::atomic::AtomicBool,
    in_flight: AtomicU64,
    handled: AtomicU64,
    failures: AtomicU64,
}

/// STAND-IN: a round-robin pool.
#[derive(Debug, Default)]
pub struct StandInPool {
    eps: RwLock<Arc<Vec<Arc<Ep>>>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

struct Guard(Arc<Ep>);

impl AttemptGuard for Guard {
    fn finish(self: Box<Self>, outcome: AttemptOutcome, _latency: Duration) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.handled.fetch_add(1, Ordering::Relaxed);
        if outcome == AttemptOutcome::Failure {
            self.0.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl StandInPool {
    /// Replaces the endpoint set, keeping counters of URLs that stay.
    pub fn set(&self, entries: &[ServiceEntry]) {
        let old = self.eps.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut new = Vec::with_capacity(entries.len());
        for e in entries {
            if let Some(ep) = old.iter().find(|o| &*o.url == e.url.as_str()) {
                new.push(ep.clone());
            } else if let Some((scheme, authority)) = split_url(&e.url) {
                new.push(Arc::new(Ep {
                    id: self.ids.fetch_add(1, Ordering::Relaxed),
                    url: Arc::from(e.url.as_str()),
                    scheme,
                    authority,
                    open: Default::default(),
                    in_flight: AtomicU64::new(0),
                    handled: AtomicU64::new(0),
                    failures: AtomicU64::new(0),
                }));
            }
        }
        *self.eps.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(new);
    }

    /// Re-reads `path` every `every` until the returned task is aborted.
    pub fn spawn_file_poller(
        self: &Arc<Self>,
        path: String,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last = String::new();
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                match tokio::fs::read_to_string(&path).await {
                    Ok(text) if text != last => match parse_services(&text) {
                        Ok(entries) => {
                            tracing::info!(file = %path, endpoints = entries.len(), "services.json reloaded");
                            pool.set(&entries);
                            last = text;
                        }
                        Err(e) => {
                            tracing::warn!(file = %path, error = %e, "invalid services.json ignored")
                        }
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!(file = %path, error = %e, "cannot read services.json"),
                }
            }
        })
    }
}

impl Upstreams for StandInPool {
    fn pick(&self, exclude: &[u64]) -> Option<Picked> {
        let eps = self.eps.read().unwrap_or_else(|p| p.into_inner()).clone();
        let n = eps.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let pick = |allow_excluded: bool| {
            (0..n).map(|i| &eps[(start + i) % n]).find(|e| {
                !e.open.load(Ordering::Relaxed) && (allow_excluded || !exclude.contains(&e.id))
            })
        };
        let ep = pick(false).or_else(|| pick(true))?.clone();
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Picked {
            id: ep.id,
            url: ep.url.clone(),
            scheme: ep.scheme.clone(),
            authority: ep.authority.clone(),
            guard: Box::new(Guard(ep)),
        })
    }

    fn circuit_changed(&self, url: &str, open: bool) {
        let eps = self.eps.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(e) = eps.iter().find(|e| &*e.url == url) {
            e.open.store(open, Ordering::Relaxed);
        }
    }

    fn stats(&self) -> serde_json::Value {
        let eps = self.eps.read().unwrap_or_else(|p| p.into_inner()).clone();
        serde_json::json!({
            "strategy": "round_robin (stand-in)",
            "endpoints": eps.iter().map(|e| serde_json::json!({
                "url": &*e.url,
                "healthy": !e.open.load(Ordering::Relaxed),
                "in_flight": e.in_flight.load(Ordering::Relaxed),
                "handled": e.handled.load(Ordering::Relaxed),
                "failures": e.failures.load(Ordering::Relaxed),
            })).collect::<Vec<_>>(),
        })
    }
}
