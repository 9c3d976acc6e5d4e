//! A bounded cache of verified tokens, so that a client reusing its token pays
//! for one signature check, not one per request.
//!
//! Keyed by the whole token text (never by a part of it), so a hit is exactly a
//! token that verified before; the time claims are re-checked on every hit.
//! Bound: [`SHARDS`] x [`PER_SHARD`] entries; a full shard is cleared (the cost of
//! a miss is one verification, so a crude eviction is enough).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
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
    /// The whole token: a hit must be exactly this text, not just its hash.
    token: Box<str>,
    principal: Principal,
    nbf: u64,
    exp: u64,
}

/// Uses the token's (already keyed) 64-bit hash as the table hash as is.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; fold anything else in all the same.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A shard: entries by the token's keyed hash (two tokens with the same hash
/// share a slot, the later one replacing the earlier: a miss, never a wrong hit).
type Shard = HashMap<u64, Entry, BuildHasherDefault<PassThrough>>;

/// Verified-token cache.
///
/// The token is hashed once per lookup with foldhash (randomly seeded; a
/// fraction of SipHash's cost on a token of a few hundred bytes): that hash
/// picks the shard and is the shard's key. Only tokens that verified are ever
/// stored, so a client cannot fill or aim at slots with forged ones.
pub(crate) struct TokenCache {
    hasher: hashbrown::DefaultHashBuilder,
    // std Mutex: a lookup or insert only, never held across `.await`.
    shards: Vec<Mutex<Shard>>,
}

impl TokenCache {
    pub(crate) fn new() -> Self {
        Self {
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
        }
    }

    /// The token's hash and its shard. The shard comes from bits the table
    /// does not use for buckets (low bits) or tags (top 7 bits).
    fn shard(&self, token: &str) -> (u64, &Mutex<Shard>) {
        let h = self.hasher.hash_one(token);
        (h, &self.shards[((h >> 32) as usize) % SHARDS])
    }

    /// The principal of a previously verified token still within its time
    /// window (`now` and `leeway` in seconds).
    pub(crate) fn get(&self, token: &str, now: u64, leeway: u64) -> Option<Principal> {
        let (h, shard) = self.shard(token);
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        let e = shard.get(&h).filter(|e| *e.token == *token)?;
        (e.nbf <= now.saturating_add(leeway) && now < e.exp.saturating_add(leeway))
            .then(|| e.principal.clone())
    }

    /// Remembers a verified token.
    pub(crate) fn put(&self, token: &str, principal: Principal, nbf: u64, exp: u64) {
        if token.len() > MAX_TOKEN_LEN {
            return;
        }
        let (h, shard) = self.shard(token);
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= PER_SHARD {
            shard.clear();
        }
        shard.insert(
            h,
            Entry {
                token: token.into(),
                principal,
                nbf,
                exp,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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

    #[test]
    fn a_slot_answers_only_for_its_own_token_text() {
        let c = TokenCache::new();
        let p = Principal {
            subject: Arc::from("c"),
        };
        // Another token stored under t1's hash (what a hash collision would do).
        let (h, shard) = c.shard("t1");
        shard.lock().unwrap().insert(
            h,
            Entry {
                token: "t2".into(),
                principal: p.clone(),
                nbf: 0,
                exp: u64::MAX / 2,
            },
        );
        assert_eq!(c.get("t1", 10, 0), None);
        c.put("t1", p.clone(), 0, u64::MAX / 2);
        assert_eq!(c.get("t1", 10, 0), Some(p));
    }
}
