//! Client credentials stored as SHA-256 hashes, compared in constant time.
//!
//! Client secrets are machine-generated, high-entropy credentials (not human
//! passwords), so a fast hash is adequate: guessing is infeasible whatever the hash
//! cost, and token issue stays cheap. Use 32+ random bytes per client.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Known clients: `client_id` -> SHA-256 of the secret.
#[derive(Clone, Default)]
pub struct ClientStore {
    clients: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for ClientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes are not printed: they would allow offline guessing of weak secrets.
        f.debug_struct("ClientStore")
            .field("clients", &self.clients.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ClientStore {
    /// Adds a client whose secret hash is given as 64 hex digits.
    pub fn insert(&mut self, id: &str, secret_sha256_hex: &str) -> Result<(), String> {
        if id.is_empty() || id.len() > 128 {
            return Err("id must be 1..=128 bytes".to_owned());
        }
        let hash = parse_hex32(secret_sha256_hex).ok_or("secret_sha256 must be 64 hex digits")?;
        if self.clients.insert(id.to_owned(), hash).is_some() {
            return Err(format!("duplicate client id {id:?}"));
        }
        Ok(())
    }

    /// Checks a presented secret. Takes the same time whether the id exists or not
    /// and however many bytes of the hash match.
    pub fn verify(&self, id: &str, secret: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        match self.clients.get(id) {
            Some(stored) => presented.ct_eq(stored).into(),
            None => {
                let dummy = [0u8; 32];
                let _ = bool::from(presented.ct_eq(&dummy));
                false
            }
        }
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether no client is configured.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// Lower-case hex SHA-256 of `secret`, the form `secret_sha256` expects.
pub fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_secret() {
        let mut s = ClientStore::default();
        s.insert("a", &sha256_hex("right-secret"))
            .unwrap_or_default();
        assert!(s.verify("a", "right-secret"));
        assert!(!s.verify("a", "wrong-secret"));
        assert!(!s.verify("b", "right-secret"));
    }

    #[test]
    fn rejects_bad_hash_and_duplicates() {
        let mut s = ClientStore::default();
        assert!(s.insert("a", "abc").is_err());
        assert!(s.insert("a", &"zz".repeat(32)).is_err());
        assert!(s.insert("a", &sha256_hex("x")).is_ok());
        assert!(s.insert("a", &sha256_hex("y")).is_err());
    }

    #[test]
    fn seed_hash_matches_seed_secret() {
        assert_eq!(
            sha256_hex("supersecret123"),
            crate::auth::SEED_CLIENT_SECRET_SHA256
        );
    }
}
