//! Validated, typed settings built once from a [`GatewayConfig`].

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use super::ConfigError;
use super::raw::{Algorithm, GatewayConfig, RateLimitKey, Strategy};
use crate::auth::{ClientStore, MIN_SECRET_LEN, SEED_CLIENT_SECRET_SHA256};

/// Fixed secret used only in `dev_mode` when none is configured. Tokens signed with
/// it are forgeable by anyone who reads this source, which is why it is dev-only.
const DEV_SECRET: &str = "nexus-dev-mode-insecure-signing-secret-do-not-deploy";

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Development mode (weak secrets allowed, loud warnings).
    pub dev_mode: bool,
    /// Auth.
    pub auth: AuthSettings,
    /// Rate limit; `None` when disabled.
    pub rate_limit: Option<RateLimitSettings>,
    /// Breakers; `None` when disabled.
    pub breaker: Option<BreakerSettings>,
    /// Proxy.
    pub proxy: ProxySettings,
    /// Transforms.
    pub transform: TransformSettings,
    /// Redis URL of the shared blocklist, if any.
    pub blocklist_redis_url: Option<String>,
    /// Full refresh period of the local blocklist view.
    pub blocklist_refresh: Duration,
    /// Bound of the `/telemetry` ring.
    pub telemetry_capacity: NonZeroUsize,
    /// Drain deadline on shutdown.
    pub drain_timeout: Duration,
    /// Client connection time limits (`server:`).
    pub server: ServerSettings,
    /// `tracing.enabled`: `SERVER`/`CLIENT` spans and `traceparent` propagation.
    pub tracing: bool,
    /// Kafka bootstrap list for events, if any.
    pub kafka_bootstrap: Option<String>,
    /// Create missing event topics.
    pub kafka_create_topics: bool,
    /// Admin servers read by the `/dashboard` page.
    pub dashboard: super::DashboardSettings,
    /// Human-readable warnings produced by validation (dev mode, demo secrets).
    pub warnings: Vec<String>,
}

/// Validated `server:` (see [`ServerConfig`](super::ServerConfig)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Deadline for the protocol sniff, HTTP/1 request headers and the
    /// `/auth/token` body.
    pub header_read_timeout: Duration,
    /// Idle connection (no request in flight) lifetime.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive PING interval.
    pub http2_keepalive_interval: Duration,
    /// HTTP/2 keep-alive PING acknowledgement deadline.
    pub http2_keepalive_timeout: Duration,
    /// Longest time the client may take none of the data the gateway has to
    /// write to it before the connection is dropped.
    pub send_timeout: Duration,
}

/// Validated `auth:`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Pinned algorithm.
    pub algorithm: Algorithm,
    /// HS256 secret (present iff `algorithm` is HS256).
    pub hs256_secret: Option<Vec<u8>>,
    /// JWKS document text (present iff `algorithm` is RS256/ES256).
    pub jwks: Option<String>,
    /// Required issuer.
    pub issuer: String,
    /// Required audience.
    pub audience: String,
    /// Issued token lifetime.
    pub token_ttl: Duration,
    /// Leeway on time claims, seconds.
    pub leeway_secs: u64,
    /// Clients with hashed secrets.
    pub clients: ClientStore,
}

/// Validated `rate_limit:`.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Capacity.
    pub capacity: NonZeroU32,
    /// Refill rate per second.
    pub refill_per_sec: NonZeroU32,
    /// Key extractor.
    pub key: RateLimitKey,
    /// Bound on tracked keys.
    pub max_keys: NonZeroUsize,
}

/// Validated `breaker:`.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Error percentage (1..=100) that opens.
    pub error_threshold_percent: u8,
    /// Minimum volume.
    pub volume_threshold: NonZeroU32,
    /// Open -> half-open delay.
    pub reset_timeout: Duration,
    /// Rolling window.
    pub window: Duration,
}

/// Validated `proxy:`.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// `services.json` path.
    pub services_file: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Attempts per request (>= 1).
    pub max_attempts: NonZeroU32,
    /// Pause between attempts.
    pub retry_backoff: Duration,
    /// Upstream call timeout (response headers; a buffered body read whole).
    pub timeout: Duration,
    /// Longest pause between two frames of a streamed body, either direction.
    pub body_idle_timeout: Duration,
    /// Idle pooled connections per upstream.
    pub pool_max_idle_per_host: usize,
    /// HTTP/2 prior knowledge upstream.
    pub http2: bool,
    /// Discovery poll period.
    pub discovery_poll: Duration,
}

/// Validated `transform:`.
#[derive(Debug, Clone)]
pub struct TransformSettings {
    /// `x-gateway-version` value.
    pub gateway_version: http::HeaderValue,
    /// Lower-cased header names to strip.
    pub strip_headers: Vec<http::HeaderName>,
    /// Default JSON wrapping.
    pub wrap_json: bool,
    /// Overrides sorted by descending prefix length.
    pub routes: Vec<(String, bool)>,
    /// Cap on buffered JSON bodies.
    pub max_wrap_body_bytes: usize,
}

/// Upper bound of the period and deadline settings: one hour.
const HOUR_MS: u64 = 3_600_000;
/// Most attempts per request (`proxy.max_attempts`).
const MAX_ATTEMPTS: u32 = 10;
/// Longest pause between attempts (`proxy.retry_backoff_ms`), one minute.
const MAX_BACKOFF_MS: u64 = 60_000;

/// A positive number of milliseconds, at most `max`.
fn ms_max(field: &str, v: u64, max: u64) -> Result<Duration, ConfigError> {
    if v == 0 || v > max {
        return Err(ConfigError::invalid(field, format!("must be in 1..={max}")));
    }
    Ok(Duration::from_millis(v))
}

fn nz32(field: &str, v: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(v).ok_or_else(|| ConfigError::invalid(field, "must be greater than 0"))
}

impl GatewayConfig {
    /// Validates every field and resolves the signing secret and JWKS file.
    ///
    /// `env` looks up environment variables (pass `|k| std::env::var(k).ok()` from a
    /// binary, a closure over a map in tests). Refuses a missing or weak (< 32 bytes)
    /// signing secret and the seed's published demo client secret unless `dev_mode`.
    pub fn validate(self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut warnings = Vec::new();
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            ConfigError::invalid("listen", format!("{:?} is not ip:port ({e})", self.listen))
        })?;
        let auth = validate_auth(&self, &env, &mut warnings)?;

        let rl = &self.rate_limit;
        let rate_limit = if rl.enabled {
            if let RateLimitKey::Header(h) = &rl.key {
                http::HeaderName::try_from(h.as_str()).map_err(|_| {
                    ConfigError::invalid(
                        "rate_limit.key.header",
                        format!("{h:?} is not a header name"),
                    )
                })?;
            }
            Some(RateLimitSettings {
                capacity: nz32("rate_limit.capacity", rl.capacity)?,
                refill_per_sec: nz32("rate_limit.refill_per_sec", rl.refill_per_sec)?,
                key: rl.key.clone(),
                max_keys: NonZeroUsize::new(rl.max_keys as usize).ok_or_else(|| {
                    ConfigError::invalid("rate_limit.max_keys", "must be greater than 0")
                })?,
            })
        } else {
            None
        };

        let b = &self.breaker;
        let breaker = if b.enabled {
            if b.error_threshold_percent == 0 || b.error_threshold_percent > 100 {
                return Err(ConfigError::invalid(
                    "breaker.error_threshold_percent",
                    "must be in 1..=100",
                ));
            }
            Some(BreakerSettings {
                error_threshold_percent: b.error_threshold_percent,
                volume_threshold: nz32("breaker.volume_threshold", b.volume_threshold)?,
                reset_timeout: ms_max("breaker.reset_timeout_ms", b.reset_timeout_ms, HOUR_MS)?,
                window: ms_max("breaker.window_ms", b.window_ms, HOUR_MS)?,
            })
        } else {
            None
        };

        let p = &self.proxy;
        if p.services_file.is_empty() {
            return Err(ConfigError::invalid(
                "proxy.services_file",
                "must not be empty",
            ));
        }
        let proxy = ProxySettings {
            services_file: p.services_file.clone(),
            strategy: p.strategy,
            max_attempts: nz32("proxy.max_attempts", p.max_attempts)
                .ok()
                .filter(|n| n.get() <= MAX_ATTEMPTS)
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "proxy.max_attempts",
                        format!("must be in 1..={MAX_ATTEMPTS}"),
                    )
                })?,
            retry_backoff: if p.retry_backoff_ms <= MAX_BACKOFF_MS {
                Duration::from_millis(p.retry_backoff_ms)
            } else {
                return Err(ConfigError::invalid(
                    "proxy.retry_backoff_ms",
                    format!("must be in 0..={MAX_BACKOFF_MS}"),
                ));
            },
            timeout: ms_max("proxy.timeout_ms", p.timeout_ms, 600_000)?,
            body_idle_timeout: ms_max(
                "proxy.body_idle_timeout_ms",
                p.body_idle_timeout_ms,
                HOUR_MS,
            )?,
            pool_max_idle_per_host: p.pool_max_idle_per_host,
            http2: p.http2,
            discovery_poll: ms_max("proxy.discovery_poll_ms", p.discovery_poll_ms, HOUR_MS)?,
        };

        let transform = validate_transform(&self)?;
        let telemetry_capacity = NonZeroUsize::new(self.admin.telemetry_capacity)
            .filter(|n| n.get() <= 1_000_000)
            .ok_or_else(|| {
                ConfigError::invalid("admin.telemetry_capacity", "must be in 1..=1000000")
            })?;
        if self.dev_mode {
            warnings.push(
                "dev_mode is ON: weak secrets are accepted; never run this in production"
                    .to_owned(),
            );
        }
        Ok(Settings {
            listen,
            dev_mode: self.dev_mode,
            auth,
            rate_limit,
            breaker,
            proxy,
            transform,
            blocklist_redis_url: self.blocklist.redis_url.clone(),
            blocklist_refresh: ms_max("blocklist.refresh_ms", self.blocklist.refresh_ms, HOUR_MS)?,
            telemetry_capacity,
            tracing: self.tracing.enabled,
            drain_timeout: ms_max(
                "shutdown.drain_timeout_ms",
                self.shutdown.drain_timeout_ms,
                HOUR_MS,
            )?,
            server: ServerSettings {
                header_read_timeout: ms_max(
                    "server.header_read_timeout_ms",
                    self.server.header_read_timeout_ms,
                    300_000,
                )?,
                idle_timeout: ms_max(
                    "server.idle_timeout_ms",
                    self.server.idle_timeout_ms,
                    3_600_000,
                )?,
                http2_keepalive_interval: ms_max(
                    "server.http2_keepalive_interval_ms",
                    self.server.http2_keepalive_interval_ms,
                    3_600_000,
                )?,
                http2_keepalive_timeout: ms_max(
                    "server.http2_keepalive_timeout_ms",
                    self.server.http2_keepalive_timeout_ms,
                    300_000,
                )?,
                send_timeout: ms_max(
                    "server.send_timeout_ms",
                    self.server.send_timeout_ms,
                    3_600_000,
                )?,
            },
            kafka_bootstrap: match &self.events.kafka_bootstrap {
                Some(b)
                    if b.split(',')
                        .any(|h| h.trim().is_empty() || !h.contains(':')) =>
                {
                    return Err(ConfigError::invalid(
                        "events.kafka_bootstrap",
                        "must be host:port[,host:port...]",
                    ));
                }
                other => other.clone(),
            },
            kafka_create_topics: self.events.create_topics,
            dashboard: self.dashboard.validate()?,
            warnings,
        })
    }
}

fn validate_auth(
    cfg: &GatewayConfig,
    env: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Result<AuthSettings, ConfigError> {
    let a = &cfg.auth;
    let (hs256_secret, jwks) = match a.algorithm {
        Algorithm::HS256 => {
            if a.jwks_file.is_some() {
                return Err(ConfigError::invalid(
                    "auth.jwks_file",
                    "only used with RS256/ES256",
                ));
            }
            let secret = a
                .signing_secret
                .clone()
                .or_else(|| a.signing_secret_env.as_deref().and_then(env));
            let secret = match secret {
                Some(s) if s.len() >= MIN_SECRET_LEN => s,
                other if cfg.dev_mode => {
                    warnings.push(format!(
                        "auth.signing_secret is {}; dev_mode uses an insecure built-in secret",
                        if other.is_some() {
                            "weak (< 32 bytes)"
                        } else {
                            "missing"
                        }
                    ));
                    other
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| DEV_SECRET.to_owned())
                }
                Some(_) => {
                    return Err(ConfigError::invalid(
                        "auth.signing_secret",
                        format!(
                            "weak: at least {MIN_SECRET_LEN} bytes required (or set dev_mode: true)"
                        ),
                    ));
                }
                None => {
                    return Err(ConfigError::invalid(
                        "auth.signing_secret",
                        format!(
                            "missing: set it or the environment variable {:?} (or set dev_mode: true)",
                            a.signing_secret_env
                                .as_deref()
                                .unwrap_or("<auth.signing_secret_env>")
                        ),
                    ));
                }
            };
            (Some(secret.into_bytes()), None)
        }
        Algorithm::RS256 | Algorithm::ES256 => {
            let path = a.jwks_file.as_deref().ok_or_else(|| {
                ConfigError::invalid("auth.jwks_file", "required for RS256/ES256")
            })?;
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                field: "auth.jwks_file",
                path: path.to_owned(),
                source,
            })?;
            (None, Some(text))
        }
    };
    if a.token_ttl_secs == 0 || a.token_ttl_secs > 86_400 * 7 {
        return Err(ConfigError::invalid(
            "auth.token_ttl_secs",
            "must be in 1..=604800",
        ));
    }
    if a.leeway_secs > 300 {
        return Err(ConfigError::invalid(
            "auth.leeway_secs",
            "must be at most 300",
        ));
    }
    if a.issuer.is_empty() {
        return Err(ConfigError::invalid("auth.issuer", "must not be empty"));
    }
    if a.audience.is_empty() {
        return Err(ConfigError::invalid("auth.audience", "must not be empty"));
    }
    let mut clients = ClientStore::default();
    for (i, c) in a.clients.iter().enumerate() {
        if c.secret_sha256
            .eq_ignore_ascii_case(SEED_CLIENT_SECRET_SHA256)
        {
            if !cfg.dev_mode {
                return Err(ConfigError::invalid(
                    format!("auth.clients[{i}].secret_sha256"),
                    "is the seed's published demo secret; set your own (or dev_mode: true)",
                ));
            }
            warnings.push(format!(
                "client {:?} uses the seed's published demo secret",
                c.id
            ));
        }
        clients
            .insert(&c.id, &c.secret_sha256)
            .map_err(|reason| ConfigError::invalid(format!("auth.clients[{i}]"), reason))?;
    }
    Ok(AuthSettings {
        algorithm: a.algorithm,
        hs256_secret,
        jwks,
        issuer: a.issuer.clone(),
        audience: a.audience.clone(),
        token_ttl: Duration::from_secs(a.token_ttl_secs),
        leeway_secs: a.leeway_secs,
        clients,
    })
}

fn validate_transform(cfg: &GatewayConfig) -> Result<TransformSettings, ConfigError> {
    let t = &cfg.transform;
    let gateway_version = http::HeaderValue::from_str(&t.gateway_version).map_err(|_| {
        ConfigError::invalid("transform.gateway_version", "not a valid header value")
    })?;
    let mut strip_headers = Vec::with_capacity(t.strip_headers.len());
    for (i, h) in t.strip_headers.iter().enumerate() {
        let name = http::HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| {
            ConfigError::invalid(format!("transform.strip_headers[{i}]"), "not a header name")
        })?;
        strip_headers.push(name);
    }
    let mut routes = Vec::with_capacity(t.routes.len());
    for (i, r) in t.routes.iter().enumerate() {
        if !r.prefix.starts_with("/api") {
            return Err(ConfigError::invalid(
                format!("transform.routes[{i}].prefix"),
                "must start with /api",
            ));
        }
        routes.push((r.prefix.trim_end_matches('/').to_owned(), r.wrap_json));
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
    if t.max_wrap_body_bytes == 0 || t.max_wrap_body_bytes > 64 * 1024 * 1024 {
        return Err(ConfigError::invalid(
            "transform.max_wrap_body_bytes",
            "must be in 1..=67108864",
        ));
    }
    Ok(TransformSettings {
        gateway_version,
        strip_headers,
        wrap_json: t.wrap_json,
        routes,
        max_wrap_body_bytes: t.max_wrap_body_bytes,
    })
}

impl TransformSettings {
    /// Whether JSON responses for this (normalised, client-side) path are wrapped.
    pub fn wrap_for(&self, path: &str) -> bool {
        for (prefix, wrap) in &self.routes {
            if path == prefix
                || (path.starts_with(prefix.as_str())
                    && path.as_bytes().get(prefix.len()) == Some(&b'/'))
            {
                return *wrap;
            }
        }
        self.wrap_json
    }
}
