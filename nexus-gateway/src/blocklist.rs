//! IP blocklist check (403), fed by the consumer service through Redis.
//!
//! The request path only reads a local in-memory view ([`Blocklist::is_blocked`] is
//! synchronous and never does I/O); keeping that view fresh is the job of the
//! implementation's background task.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

/// A local, synchronous view of blocked IPs.
pub trait Blocklist: Send + Sync + 'static {
    /// Whether requests from `ip` are refused.
    fn is_blocked(&self, ip: IpAddr) -> bool;
    /// Number of blocked IPs currently known (for dashboards).
    fn len(&self) -> usize;
    /// Whether no IP is blocked.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` blocked IPs, in no particular order (for dashboards;
    /// default: none listed).
    fn sample(&self, max: usize) -> Vec<IpAddr> {
        let _ = max;
        Vec::new()
    }
}

/// A blocklist held in memory, replaced or edited by its owner.
#[derive(Debug, Clone, Default)]
pub struct StaticBlocklist {
    inner: Arc<RwLock<HashSet<IpAddr>>>,
}

impl StaticBlocklist {
    /// Blocks an IP.
    pub fn block(&self, ip: IpAddr) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ip);
    }

    /// Unblocks an IP.
    pub fn unblock(&self, ip: IpAddr) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    /// Replaces the whole set.
    pub fn replace(&self, set: HashSet<IpAddr>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = set;
    }
}

impl Blocklist for StaticBlocklist {
    fn is_blocked(&self, ip: IpAddr) -> bool {
        let set = self.inner.read().unwrap_or_else(|p| p.into_inner());
        !set.is_empty() && set.contains(&ip)
    }

    fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn sample(&self, max: usize) -> Vec<IpAddr> {
        let set = self.inner.read().unwrap_or_else(|p| p.into_inner());
        set.iter().take(max).copied().collect()
    }
}
