//! Authentication: client credentials for `POST /auth/token`, JWT issue and
//! verification, and the [`JwtAuthLayer`] that guards every non-public route.

mod cache;
mod clients;
mod jwt;
mod layer;
mod token;

pub use clients::{ClientStore, sha256_hex};
pub use jwt::{AuthError, Claims, JwtKeys, Principal};
pub use layer::{JwtAuth, JwtAuthFuture, JwtAuthLayer, principal};
pub(crate) use token::issue_token;

/// Shortest HS256 signing secret accepted outside `dev_mode`, bytes (RFC 7518 §3.2:
/// the key must be at least as long as the hash output).
pub const MIN_SECRET_LEN: usize = 32;

/// SHA-256 of the seed's published demo secret `supersecret123`. Accepted only in
/// `dev_mode`, where it is the default for client `gateway-client`.
pub const SEED_CLIENT_SECRET_SHA256: &str =
    "b2563cb5a4cbbe05d50c3d8098f8a3f1f9546a2a73ce7064e5c3663f33e4a3c6";
