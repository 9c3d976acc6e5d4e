//! A bounded cache of verified tokens, so that a client reusing its token pays
//! for one signature check, not one per request.
//!
//! Keyed by the whole token text (never by a part of it), so a hit is exactly a
//! token that verified before; the time claims are re-checked on every hit.
//! Bound: [`SHARDS`] x [`PER_SHARD`] entries; a full shard is cleared (the cost of
//! a miss is one verification, so a crude eviction is enough).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use super::jwt::Principal;

/// Number of shards.
pub(crate) const SHARDS: usize = 16;
/// Entries per shard.
pub(crate) const PER_SHARD: usize = 1024;
/// Longer tokens are never cached.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

#[derive(Clone)]
struct Entry {
    principal: Principal,
    nbf: u64,
    exp: u64,
}

/// Verified-token cache.
pub(crate) struct TokenCache {
    hasher: std::collections::hash_map::RandomState,
    // std Mutex: a lookup or insert only, never held across `.await`.
    shards: Vec<Mutex<HashMap<Box<str>, Entry>>>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, token: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        &self.shards[(self.hasher.hash_one(token) as usize) % SHARDS]
    }

    /// The principal of a previously verified token still within its time
    /// window (`now` and `leeway` in seconds).
    pub(crate) fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Principal> {
        let shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(token)?;
        (e.nbf <= now.saturating_add(leeway) && now < e.exp.saturating_add(leeway))
            .then(|| e.principal.clone())
    }

    /// Remembers a verified token.
    pub(crate) fn put(&self, token: &str, principal: Principal, nbf: u64, exp: u64) {
        if token.len() > MAX_TOKEN_LEN {
            return;
        }
        let mut shard = self.shard(token).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= PER_SHARD {
            shard.clear();
        }
        shard.insert(
            token.into(),
            Entry {
                principal,
                nbf,
                exp,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn hits_only_within_the_time_window_and_stays_bounded() {
        let c = TokenCache::new();
        let p = Principal {
            subject: Arc::from("c"),
        };
        c.put("t1", p.clone(), 100, 200);
        assert_eq!(c.get("t1", 150, 0), Some(p.clone()));
        assert_eq!(c.get("t1", 200, 0), None, "expired");
        assert_eq!(c.get("t1", 204, 5), Some(p.clone()), "within leeway");
        assert_eq!(c.get("t1", 90, 5), None, "not yet valid");
        assert_eq!(c.get("t2", 150, 0), None);
        c.put("t3", p.clone(), 0, u64::MAX);
        assert_eq!(c.get("t3", u64::MAX - 1, 5), Some(p.clone()), "no overflow");
        for i in 0..(SHARDS * PER_SHARD * 3) {
            c.put(&format!("tok{i}"), p.clone(), 0, u64::MAX / 2);
        }
        let total: usize = c
            .shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= SHARDS * PER_SHARD);
    }
}
