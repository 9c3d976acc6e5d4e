//! JWT issue (HS256) and verification with a pinned algorithm.
//!
//! The algorithm is fixed by configuration and checked against the token header
//! before any key is used, so neither `none` nor HS/RS confusion (an RSA public key
//! used as an HMAC secret) is possible: the decoding keys of an RS256 gateway are
//! RSA keys only, and an HS256 gateway has no public keys at all.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{Algorithm, AuthSettings, ConfigError};

/// Claims the gateway issues and requires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the client id.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at (optional in tokens from other issuers).
    #[serde(default)]
    pub iat: u64,
    /// Not before (optional in tokens from other issuers).
    #[serde(default)]
    pub nbf: u64,
}

/// What verification reads from a token's claims. `jsonwebtoken` deserializes
/// this before it validates the claims, so every field takes any JSON value:
/// a missing or wrongly typed claim is then reported by its validation as
/// invalid claims (naming the claim in the debug log), not as a malformed
/// token. `exp`/`nbf` may be non-integer NumericDates, `aud` a string or an
/// array (RFC 7519 §4.1.3; checked by `jsonwebtoken`).
#[derive(Deserialize)]
struct VerifiedClaims {
    #[serde(default)]
    sub: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<serde_json::Value>,
    #[serde(default)]
    nbf: Option<serde_json::Value>,
}

impl VerifiedClaims {
    /// `(nbf, exp)` in whole seconds for the cache, rounded towards the
    /// narrower window (`nbf` up, `exp` down; casts saturate).
    fn window(&self) -> (u64, u64) {
        let secs = |v: &Option<serde_json::Value>| v.as_ref().and_then(serde_json::Value::as_f64);
        let nbf = secs(&self.nbf).map_or(0, |n| n.ceil() as u64);
        let exp = secs(&self.exp).map_or(0, |e| e.floor() as u64);
        (nbf, exp)
    }
}

/// The authenticated caller, put in request extensions by [`JwtAuth`](super::JwtAuth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub` (the client id for tokens issued by the gateway).
    pub subject: Arc<str>,
}

/// Why a request was not authenticated. Each variant is a distinct 401 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing bearer token")]
    Missing,
    /// Not a well-formed JWT.
    #[error("malformed token")]
    Malformed,
    /// `exp` is in the past (beyond leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The header names another algorithm than the pinned one.
    #[error("algorithm not allowed")]
    WrongAlgorithm,
    /// The signature does not verify with any configured key.
    #[error("invalid signature")]
    BadSignature,
    /// `iss` or `aud` does not match, or a required claim is missing.
    #[error("invalid claims")]
    BadClaims,
}

impl AuthError {
    /// Stable machine-readable code used in the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed => "token_malformed",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongAlgorithm => "token_wrong_algorithm",
            Self::BadSignature => "token_bad_signature",
            Self::BadClaims => "token_bad_claims",
        }
    }
}

/// Signing and verification keys with the pinned validation rules.
pub struct JwtKeys {
    alg: jsonwebtoken::Algorithm,
    encoding: Option<EncodingKey>,
    /// `(kid, key)`; a token without `kid` is tried against every key.
    decoding: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    leeway: u64,
    cache: super::cache::TokenCache,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("alg", &self.alg)
            .field("can_issue", &self.encoding.is_some())
            .field("keys", &self.decoding.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl JwtKeys {
    /// Builds keys from validated settings (parses the JWKS for RS256/ES256).
    pub fn from_settings(a: &AuthSettings) -> Result<Self, ConfigError> {
        let alg = match a.algorithm {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        };
        let (encoding, decoding) = match (&a.hs256_secret, &a.jwks) {
            (Some(secret), _) => {
                let enc = EncodingKey::from_secret(secret)
                    .map_err(|e| ConfigError::invalid("auth.signing_secret", e.to_string()))?;
                let dec = DecodingKey::from_secret(secret)
                    .map_err(|e| ConfigError::invalid("auth.signing_secret", e.to_string()))?;
                (Some(enc), vec![(None, dec)])
            }
            (None, Some(jwks)) => (None, parse_jwks(jwks, alg)?),
            (None, None) => {
                return Err(ConfigError::invalid(
                    "auth",
                    "no signing secret and no JWKS",
                ));
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = a.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&a.issuer]);
        validation.set_audience(&[&a.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Self {
            alg,
            encoding,
            decoding,
            validation,
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            ttl_secs: a.token_ttl.as_secs(),
            leeway: a.leeway_secs,
            cache: super::cache::TokenCache::new(),
        })
    }

    /// Whether this gateway can issue tokens (HS256 only; RS256/ES256 tokens come
    /// from an external identity provider).
    pub fn can_issue(&self) -> bool {
        self.encoding.is_some()
    }

    /// Issues a token for `subject`; returns the token and its lifetime in seconds.
    pub fn issue(&self, subject: &str) -> Option<(String, u64)> {
        let key = self.encoding.as_ref()?;
        let now = now_secs();
        let claims = Claims {
            sub: subject.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + self.ttl_secs,
            iat: now,
            nbf: now,
        };
        let token = jsonwebtoken::encode(&Header::new(self.alg), &claims, key).ok()?;
        Some((token, self.ttl_secs))
    }

    /// Verifies a bearer token against the pinned algorithm, keys and claims.
    /// A token that verified before is answered from a bounded cache (its time
    /// claims re-checked).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some(p) = self.cache.get(token, now_secs(), self.leeway) {
            return Ok(p);
        }
        self.verify_uncached(token)
    }

    fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        let header = token.split('.').next().ok_or(AuthError::Malformed)?;
        if token.split('.').count() != 3 {
            return Err(AuthError::Malformed);
        }
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.as_bytes())
            .map_err(|_| AuthError::Malformed)?;
        let raw: RawHeader = serde_json::from_slice(&raw).map_err(|_| AuthError::Malformed)?;
        if raw.alg != alg_name(self.alg) {
            return Err(AuthError::WrongAlgorithm);
        }
        let mut last = AuthError::BadSignature;
        for (kid, key) in &self.decoding {
            if let (Some(want), Some(have)) = (&raw.kid, kid)
                && want != have
            {
                continue;
            }
            match jsonwebtoken::decode::<VerifiedClaims>(token, key, &self.validation) {
                Ok(data) => {
                    let (nbf, exp) = data.claims.window();
                    // Validated as a required string claim.
                    let Some(sub) = data.claims.sub.as_ref().and_then(|s| s.as_str()) else {
                        return Err(AuthError::BadClaims);
                    };
                    let p = Principal {
                        subject: Arc::from(sub),
                    };
                    self.cache.put(token, p.clone(), nbf, exp);
                    return Ok(p);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "token refused");
                    last = map_error(e.kind());
                    if last != AuthError::BadSignature {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

fn alg_name(alg: jsonwebtoken::Algorithm) -> &'static str {
    match alg {
        jsonwebtoken::Algorithm::RS256 => "RS256",
        jsonwebtoken::Algorithm::ES256 => "ES256",
        _ => "HS256",
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject
        | ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_) => AuthError::BadClaims,
        _ => AuthError::Malformed,
    }
}

fn parse_jwks(
    text: &str,
    alg: jsonwebtoken::Algorithm,
) -> Result<Vec<(Option<String>, DecodingKey)>, ConfigError> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|e| ConfigError::invalid("auth.jwks_file", format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let family_ok = match alg {
            jsonwebtoken::Algorithm::RS256 => matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
            ),
            _ => matches!(
                jwk.algorithm,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)
            ),
        };
        if !family_ok {
            continue; // keys of another family can never verify the pinned algorithm
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            ConfigError::invalid(format!("auth.jwks_file: keys[{i}]"), e.to_string())
        })?;
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err(ConfigError::invalid(
            "auth.jwks_file",
            format!("no {alg:?} key in the set"),
        ));
    }
    Ok(keys)
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
