//! The policy file as written: serde types, validated while they are
//! deserialized (`try_from`), so every error carries the YAML location.

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;

use super::{duration, size};

/// Top level of a policy file. Either format, or both, may be present.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    /// Format version of the `rules` list; only `1` exists.
    #[serde(default)]
    pub(crate) version: Option<u32>,
    /// Rules in the current format.
    #[serde(default)]
    pub(crate) rules: Vec<super::Rule>,
    /// Rules in the seed's format (`match`, `ttl`, `enabled`).
    #[serde(default)]
    pub(crate) policies: Vec<SeedPolicy>,
}

/// One rule in the current format, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Command names; absent means every command.
    #[serde(default)]
    pub(crate) commands: Option<Vec<CommandName>>,
    /// Key glob; absent means every key.
    #[serde(default)]
    pub(crate) keys: Option<String>,
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub(crate) ttl: Option<Duration>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    pub(crate) ttl_jitter: Option<Duration>,
    #[serde(default)]
    pub(crate) singleflight: bool,
    #[serde(default)]
    pub(crate) hot: Option<HotPolicy>,
    #[serde(default)]
    pub(crate) tags: Vec<TagName>,
    #[serde(default)]
    pub(crate) stampede: Option<StampedePolicy>,
    #[serde(default)]
    pub(crate) near_cache: Option<NearCachePolicy>,
}

fn yes() -> bool {
    true
}

/// One rule in the seed's format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeedPolicy {
    #[serde(rename = "match")]
    pub(crate) command: CommandName,
    /// Seconds; `0` means no TTL.
    #[serde(default)]
    pub(crate) ttl: u64,
    #[serde(default = "yes")]
    pub(crate) enabled: bool,
}

/// A command name: ASCII letters, digits, `.`, `_`, `-`, `|`, at most 32
/// bytes, stored upper-case. `*` means every command.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct CommandName(pub(crate) String);

/// Longest command name accepted (Redis' longest is well below).
pub(crate) const MAX_COMMAND_LEN: usize = 32;

impl TryFrom<String> for CommandName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = s == "*"
            || (!s.is_empty()
                && s.len() <= MAX_COMMAND_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-|".contains(&b)));
        if ok {
            Ok(Self(s.to_ascii_uppercase()))
        } else {
            Err(format!(
                "invalid command name {s:?}: expected 1..={MAX_COMMAND_LEN} ASCII letters, digits, `.`, `_`, `-` or `|`, or `*`"
            ))
        }
    }
}

/// A tag name: non-empty, at most 256 bytes, no whitespace or control bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct TagName(pub(crate) String);

impl TryFrom<String> for TagName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.is_empty() || s.len() > 256 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            Err(format!(
                "invalid tag {s:?}: expected 1..=256 bytes without whitespace or control characters"
            ))
        } else {
            Ok(Self(s))
        }
    }
}

/// Hot-key handling for a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawHot")]
pub struct HotPolicy {
    /// Estimated accesses per `window` from which a key counts as hot.
    pub threshold: NonZeroU64,
    /// Rate window; also the minimum time between two extensions of one key.
    pub window: Duration,
    /// How much TTL a hot key gains per extension.
    pub extend_by: Duration,
    /// The TTL an extension never goes beyond.
    pub max_ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHot {
    threshold: NonZeroU64,
    #[serde(deserialize_with = "duration::deserialize")]
    window: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    extend_by: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    max_ttl: Duration,
}

impl TryFrom<RawHot> for HotPolicy {
    type Error = String;
    fn try_from(r: RawHot) -> Result<Self, String> {
        if r.window.is_zero() {
            return Err("hot.window must be positive".into());
        }
        if r.extend_by.is_zero() {
            return Err("hot.extend_by must be positive".into());
        }
        if r.max_ttl < r.extend_by {
            return Err(format!(
                "hot.max_ttl ({}) must be at least hot.extend_by ({})",
                duration::display(r.max_ttl),
                duration::display(r.extend_by)
            ));
        }
        Ok(Self {
            threshold: r.threshold,
            window: r.window,
            extend_by: r.extend_by,
            max_ttl: r.max_ttl,
        })
    }
}

/// The stampede guard for a rule's `GET`s (see `docs/cache-policy.md`): on a
/// miss one client (the filler) gets the nil and a lease in Redis; the other
/// readers are held until the fill, bounded in time and number.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "RawStampede")]
pub struct StampedePolicy {
    /// Lifetime of the fill lease (`SET <lease> <token> NX PX lock_ttl`): how
    /// long the filler has before the next held reader is handed the lease.
    pub lock_ttl: Duration,
    /// The longest a reader is held waiting for a fill; then it gets the nil
    /// (as without the guard).
    pub wait_timeout: Duration,
    /// Most readers held per key and proxy; beyond it readers get the nil at once.
    pub max_waiters: NonZeroU32,
    /// XFetch `beta` for probabilistic early refresh (`None`: off). Larger
    /// values refresh earlier; `1.0` is the paper's optimum.
    pub early_refresh: Option<f64>,
    /// Stale-while-revalidate: while a refill is in progress, held readers get
    /// the last value Redis returned for the key, if Redis returned it at most
    /// this long ago (`None`: off).
    pub serve_stale_for: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStampede {
    #[serde(deserialize_with = "duration::deserialize")]
    lock_ttl: Duration,
    #[serde(deserialize_with = "duration::deserialize")]
    wait_timeout: Duration,
    max_waiters: NonZeroU32,
    #[serde(default)]
    early_refresh: Option<f64>,
    #[serde(default, deserialize_with = "duration::deserialize_opt")]
    serve_stale_for: Option<Duration>,
}

/// Largest accepted XFetch `beta` (beyond it every read near expiry refreshes).
pub(crate) const MAX_BETA: f64 = 100.0;

impl TryFrom<RawStampede> for StampedePolicy {
    type Error = String;
    fn try_from(r: RawStampede) -> Result<Self, String> {
        if r.lock_ttl < Duration::from_millis(1) || r.wait_timeout < Duration::from_millis(1) {
            return Err("stampede.lock_ttl and stampede.wait_timeout must be at least 1ms".into());
        }
        if let Some(b) = r.early_refresh
            && !(b.is_finite() && b > 0.0 && b <= MAX_BETA)
        {
            return Err(format!(
                "stampede.early_refresh ({b}) must be a number in (0, {MAX_BETA}] (XFetch beta; 1.0 is typical)"
            ));
        }
        if r.serve_stale_for.is_some_and(|d| d.is_zero()) {
            return Err(
                "stampede.serve_stale_for must be positive (omit it to serve no stale values)"
                    .into(),
            );
        }
        Ok(Self {
            lock_ttl: r.lock_ttl,
            wait_timeout: r.wait_timeout,
            max_waiters: r.max_waiters,
            early_refresh: r.early_refresh,
            serve_stale_for: r.serve_stale_for,
        })
    }
}

/// Which keys a rule's near cache admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NearAdmission {
    /// Every key the rule matches (hot keys still win when the cache is full).
    All,
    /// Only keys the hot-key detector currently rates at `hot_rate` reads
    /// per second or more.
    Hot,
}

/// The in-process near cache of `GET` replies for a rule's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawNearCache")]
pub struct NearCachePolicy {
    /// Longest time an entry is served from process memory (its max age).
    pub ttl: Duration,
    /// Most entries kept for this rule.
    pub max_entries: NonZeroUsize,
    /// Most bytes (keys, values and bookkeeping) kept for this rule.
    pub max_bytes: NonZeroUsize,
    /// Largest value kept, in bytes.
    pub max_value_bytes: NonZeroUsize,
    /// Which keys are admitted.
    pub admit: NearAdmission,
    /// With [`NearAdmission::Hot`]: reads per second from which a key is admitted.
    pub hot_rate: NonZeroU32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNearCache {
    #[serde(deserialize_with = "duration::deserialize")]
    ttl: Duration,
    max_entries: NonZeroUsize,
    #[serde(default, deserialize_with = "size::deserialize_opt")]
    max_bytes: Option<usize>,
    #[serde(default, deserialize_with = "size::deserialize_opt")]
    max_value_bytes: Option<usize>,
    #[serde(default)]
    admit: Option<NearAdmission>,
    #[serde(default)]
    hot_rate: Option<NonZeroU32>,
}

/// Default `near_cache.max_bytes`: 16 MiB.
pub(crate) const DEFAULT_NEAR_BYTES: usize = 16 << 20;
/// Default `near_cache.max_value_bytes`: 64 KiB.
pub(crate) const DEFAULT_NEAR_VALUE: usize = 64 << 10;
/// Default `near_cache.hot_rate`: 100 reads per second.
pub(crate) const DEFAULT_NEAR_HOT_RATE: u32 = 100;

impl TryFrom<RawNearCache> for NearCachePolicy {
    type Error = String;
    fn try_from(r: RawNearCache) -> Result<Self, String> {
        if r.ttl.is_zero() {
            return Err("near_cache.ttl must be positive".into());
        }
        let positive = |v: Option<usize>, default: usize, field: &str| {
            NonZeroUsize::new(v.unwrap_or(default))
                .ok_or_else(|| format!("near_cache.{field} must be positive"))
        };
        let max_bytes = positive(r.max_bytes, DEFAULT_NEAR_BYTES, "max_bytes")?;
        let max_value_bytes = positive(r.max_value_bytes, DEFAULT_NEAR_VALUE, "max_value_bytes")?;
        if max_value_bytes > max_bytes {
            return Err(format!(
                "near_cache.max_value_bytes ({max_value_bytes}) must not exceed near_cache.max_bytes ({max_bytes})"
            ));
        }
        let admit = r.admit.unwrap_or(NearAdmission::All);
        if r.hot_rate.is_some() && admit != NearAdmission::Hot {
            return Err("near_cache.hot_rate applies only with `admit: hot`".into());
        }
        let hot_rate = r
            .hot_rate
            .unwrap_or(NonZeroU32::new(DEFAULT_NEAR_HOT_RATE).unwrap_or(NonZeroU32::MIN));
        Ok(Self {
            ttl: r.ttl,
            max_entries: r.max_entries,
            max_bytes,
            max_value_bytes,
            admit,
            hot_rate,
        })
    }
}
