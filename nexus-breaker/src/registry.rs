//! One breaker per endpoint, by name, for stacks that build endpoints on the fly.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::{Breaker, BreakerConfig, ConfigError, Listener, RegistryFull, Snapshot};

/// Breakers by endpoint name, all with one config and one listener, at most
/// `max_endpoints` of them (endpoints come from configuration or discovery;
/// the cap stops a misbehaving discovery source from growing it without bound).
#[derive(Clone)]
pub struct BreakerRegistry {
    config: BreakerConfig,
    listener: Option<Arc<dyn Listener>>,
    max_endpoints: usize,
    map: Arc<RwLock<HashMap<Arc<str>, Breaker>>>,
}

impl BreakerRegistry {
    /// A registry of breakers built from `config` and reporting to `listener`.
    pub fn new(
        config: BreakerConfig,
        listener: Option<Arc<dyn Listener>>,
        max_endpoints: usize,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            listener,
            max_endpoints,
            map: Arc::default(),
        })
    }

    /// The breaker of `endpoint`, created on first use.
    pub fn get_or_insert(&self, endpoint: &str) -> Result<Breaker, RegistryFull> {
        if let Some(b) = self.get(endpoint) {
            return Ok(b);
        }
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = map.get(endpoint) {
            return Ok(b.clone());
        }
        if map.len() >= self.max_endpoints {
            return Err(RegistryFull {
                max: self.max_endpoints,
            });
        }
        let name: Arc<str> = endpoint.into();
        // The config was validated in `new`.
        let breaker = Breaker::from_valid(
            Arc::clone(&name),
            self.config.clone(),
            self.listener.clone(),
        );
        map.insert(name, breaker.clone());
        Ok(breaker)
    }

    /// The breaker of `endpoint`, if any.
    pub fn get(&self, endpoint: &str) -> Option<Breaker> {
        let map = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(endpoint).cloned()
    }

    /// Forgets `endpoint` (e.g. removed by discovery).
    pub fn remove(&self, endpoint: &str) -> Option<Breaker> {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(endpoint)
    }

    /// Snapshots of every breaker, sorted by endpoint (for `/cb-stats`).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let breakers: Vec<Breaker> = {
            let map = self
                .map
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.values().cloned().collect()
        };
        let mut out: Vec<Snapshot> = breakers.iter().map(Breaker::snapshot).collect();
        out.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        out
    }
}

impl std::fmt::Debug for BreakerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("max_endpoints", &self.max_endpoints)
            .finish_non_exhaustive()
    }
}
