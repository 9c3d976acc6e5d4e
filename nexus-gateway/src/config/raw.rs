//! The YAML shape of the gateway configuration, with the seed's values as defaults.
//!
//! Every struct denies unknown fields so that a typo is an error naming the key,
//! not a silently ignored setting. Values are checked once by
//! [`GatewayConfig::validate`](super::GatewayConfig::validate).

use serde::Deserialize;

/// Root of the gateway configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the gateway listens on (seed: `0.0.0.0:3000`).
    pub listen: String,
    /// Development mode: allows a missing or weak signing secret and the seed's
    /// published demo client secret. Never enable it in production.
    pub dev_mode: bool,
    /// Token issue and verification.
    pub auth: AuthConfig,
    /// Per-client token-bucket rate limit.
    pub rate_limit: RateLimitConfig,
    /// Per-upstream circuit breaker.
    pub breaker: BreakerConfig,
    /// Upstreams, balancing, retries and timeouts for `/api/*`.
    pub proxy: ProxyConfig,
    /// Request and response transforms.
    pub transform: TransformConfig,
    /// Blocklist of IPs (written to Redis by the consumer service).
    pub blocklist: BlocklistConfig,
    /// Admin endpoints (`/telemetry`).
    pub admin: AdminConfig,
    /// Where lifecycle events go.
    pub events: EventsConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Client connection time limits.
    pub server: ServerConfig,
    /// Distributed tracing (W3C `traceparent`, `SERVER`/`CLIENT` spans).
    pub tracing: TracingConfig,
    /// The `/dashboard` page: where the cache proxy's and the consumer's admin
    /// servers answer.
    pub dashboard: DashboardConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:3000".to_owned(),
            dev_mode: false,
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            breaker: BreakerConfig::default(),
            proxy: ProxyConfig::default(),
            transform: TransformConfig::default(),
            blocklist: BlocklistConfig::default(),
            admin: AdminConfig::default(),
            events: EventsConfig::default(),
            shutdown: ShutdownConfig::default(),
            server: ServerConfig::default(),
            tracing: TracingConfig::default(),
            dashboard: DashboardConfig::default(),
        }
    }
}

/// JWT algorithm accepted by the gateway. `none` is not representable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    /// HMAC-SHA256 with the gateway's signing secret (issues and verifies tokens).
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256, verified against keys from a JWKS file.
    RS256,
    /// ECDSA P-256 SHA-256, verified against keys from a JWKS file.
    ES256,
}

/// `auth:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Pinned verification algorithm (seed: HS256).
    pub algorithm: Algorithm,
    /// HS256 signing secret, inline. Prefer `signing_secret_env`.
    pub signing_secret: Option<String>,
    /// Name of the environment variable holding the HS256 signing secret.
    pub signing_secret_env: Option<String>,
    /// JWKS file with the public keys for RS256/ES256.
    pub jwks_file: Option<String>,
    /// `iss` claim put in issued tokens and required on verification.
    pub issuer: String,
    /// `aud` claim put in issued tokens and required on verification.
    pub audience: String,
    /// Lifetime of issued tokens, seconds.
    pub token_ttl_secs: u64,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// Clients allowed to request tokens.
    pub clients: Vec<ClientConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::HS256,
            signing_secret: None,
            signing_secret_env: Some("NEXUS_JWT_SECRET".to_owned()),
            jwks_file: None,
            issuer: "nexus-gateway".to_owned(),
            audience: "nexus-api".to_owned(),
            token_ttl_secs: 3600,
            leeway_secs: 5,
            clients: vec![ClientConfig {
                id: "gateway-client".to_owned(),
                secret_sha256: crate::auth::SEED_CLIENT_SECRET_SHA256.to_owned(),
            }],
        }
    }
}

/// One client of `POST /auth/token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The `client_id`.
    pub id: String,
    /// Lower-case hex SHA-256 of the client secret (`printf %s SECRET | sha256sum`).
    pub secret_sha256: String,
}

/// What the rate limiter keys on. YAML: `key: ip` or `key: {header: x-api-key}`
/// (block form `key:\n  header: x-api-key` too; the tag form `key: !header x-api-key`
/// is also accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitKey {
    /// The peer IP (seed behaviour).
    Ip,
    /// The value of a request header.
    Header(String),
}

impl<'de> Deserialize<'de> for RateLimitKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, EnumAccess, MapAccess, VariantAccess};

        const EXPECTED: &str = "`ip` or `{header: NAME}`";

        struct KeyVisitor;

        impl<'de> de::Visitor<'de> for KeyVisitor {
            type Value = RateLimitKey;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateLimitKey, E> {
                match v {
                    "ip" => Ok(RateLimitKey::Ip),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &EXPECTED)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RateLimitKey, A::Error> {
                let Some(k) = map.next_key::<String>()? else {
                    return Err(de::Error::invalid_length(0, &EXPECTED));
                };
                if k != "header" {
                    return Err(de::Error::unknown_field(&k, &["header"]));
                }
                let name: String = map.next_value()?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::unknown_field(&extra, &["header"]));
                }
                Ok(RateLimitKey::Header(name))
            }

            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<RateLimitKey, A::Error> {
                let (tag, v): (String, _) = data.variant()?;
                match tag.as_str() {
                    "ip" => v.unit_variant().map(|()| RateLimitKey::Ip),
                    "header" => v.newtype_variant().map(RateLimitKey::Header),
                    other => Err(de::Error::unknown_variant(other, &["ip", "header"])),
                }
            }
        }

        d.deserialize_any(KeyVisitor)
    }
}

/// `rate_limit:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Whether the limiter runs at all.
    pub enabled: bool,
    /// Bucket capacity (seed: 10).
    pub capacity: u32,
    /// Tokens added per second (seed: 2).
    pub refill_per_sec: u32,
    /// Key extractor.
    pub key: RateLimitKey,
    /// Most keys tracked at once (memory bound).
    pub max_keys: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 10,
            refill_per_sec: 2,
            key: RateLimitKey::Ip,
            max_keys: 100_000,
        }
    }
}

/// `breaker:` section (seed: 50 %, volume 3, reset 10 s, call timeout 5 s).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Whether per-upstream breakers run.
    pub enabled: bool,
    /// Error percentage over the window that opens the circuit.
    pub error_threshold_percent: u8,
    /// Minimum calls in the window before the circuit may open.
    pub volume_threshold: u32,
    /// Time an open circuit waits before half-open, milliseconds.
    pub reset_timeout_ms: u64,
    /// Rolling window length, milliseconds.
    pub window_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            error_threshold_percent: 50,
            volume_threshold: 3,
            reset_timeout_ms: 10_000,
            window_ms: 10_000,
        }
    }
}

/// Balancing strategy for `/api/*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Round robin.
    RoundRobin,
    /// Least outstanding requests.
    LeastOutstanding,
    /// Smooth weighted round robin (nginx's algorithm).
    WeightedRoundRobin,
    /// Power of two choices over peak EWMA latency.
    P2cEwma,
}

/// `proxy:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// The seed's `services.json`, watched live.
    pub services_file: String,
    /// Balancing strategy.
    pub strategy: Strategy,
    /// Most attempts per request, first one included (seed: 3).
    pub max_attempts: u32,
    /// Pause before a retry, milliseconds (seed: 200).
    pub retry_backoff_ms: u64,
    /// Upstream call timeout, milliseconds (seed: 5000); exceeded -> 504.
    /// Also bounds reading a buffered upstream body (small or JSON-wrapped).
    pub timeout_ms: u64,
    /// Longest pause between two frames of a streamed body, in either
    /// direction (an upstream's streamed response, a client's upload),
    /// milliseconds, 1..=3600000 (default 60000, nginx's
    /// `proxy_read_timeout` / `client_body_timeout`). Longer than
    /// `timeout_ms` so that server-sent events and long-poll responses that
    /// pause are not cut.
    pub body_idle_timeout_ms: u64,
    /// Idle keep-alive connections kept per upstream.
    pub pool_max_idle_per_host: usize,
    /// Speak HTTP/2 (prior knowledge) to upstreams instead of HTTP/1.1.
    pub http2: bool,
    /// How often `services.json` is checked, milliseconds.
    pub discovery_poll_ms: u64,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            services_file: "services.json".to_owned(),
            strategy: Strategy::RoundRobin,
            max_attempts: 3,
            retry_backoff_ms: 200,
            timeout_ms: 5000,
            body_idle_timeout_ms: 60_000,
            pool_max_idle_per_host: 256,
            http2: false,
            discovery_poll_ms: 1000,
        }
    }
}

/// A per-route override of the transforms, by path prefix under `/api`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix as seen by the client, e.g. `/api/raw`.
    pub prefix: String,
    /// Wrap JSON responses for this route.
    pub wrap_json: bool,
}

/// `transform:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// Value of `x-gateway-version` (seed: 1.0.0).
    pub gateway_version: String,
    /// Request headers never forwarded upstream.
    pub strip_headers: Vec<String>,
    /// Default for JSON wrapping of `/api/*` responses (seed: on).
    pub wrap_json: bool,
    /// Per-route overrides; the longest matching prefix wins.
    pub routes: Vec<RouteConfig>,
    /// Largest upstream JSON body that is buffered for wrapping, bytes.
    pub max_wrap_body_bytes: usize,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            gateway_version: "1.0.0".to_owned(),
            strip_headers: vec![
                "x-internal-secret".to_owned(),
                "x-admin-override".to_owned(),
            ],
            wrap_json: true,
            routes: Vec::new(),
            max_wrap_body_bytes: 1024 * 1024,
        }
    }
}

/// `blocklist:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlocklistConfig {
    /// Redis URL holding `nexus:blocked:<ip>` keys; none disables the check.
    pub redis_url: Option<String>,
    /// Full refresh period of the local view, milliseconds (pub/sub gives updates in between).
    pub refresh_ms: u64,
}

impl Default for BlocklistConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            refresh_ms: 5000,
        }
    }
}

/// `admin:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Requests kept for `/telemetry` (ring buffer bound).
    pub telemetry_capacity: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            telemetry_capacity: 1000,
        }
    }
}

/// `events:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Kafka bootstrap list (`host:port,host:port`); events go to Kafka through
    /// `nexus_events::Emitter`. None: events are logged.
    pub kafka_bootstrap: Option<String>,
    /// Create missing topics (1 partition, replication 1) when producing.
    pub create_topics: bool,
}

/// `shutdown:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long in-flight requests may drain after a shutdown signal, milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 10_000,
        }
    }
}

/// `server:` section: time limits on client connections, so that silent or
/// stalled clients cannot hold connection slots.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Time a new connection has to show its protocol (first bytes / the HTTP/2
    /// preface) and an HTTP/1 client has to send a request's headers; also the
    /// time `POST /auth/token` waits for its body. Milliseconds, 1..=300000
    /// (default 10000).
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight for this long is closed (nginx's
    /// `keepalive_timeout`). Milliseconds, 1..=3600000 (default 75000).
    pub idle_timeout_ms: u64,
    /// Interval of HTTP/2 keep-alive PINGs to the client. Milliseconds,
    /// 1..=3600000 (default 30000).
    pub http2_keepalive_interval_ms: u64,
    /// An HTTP/2 client that does not acknowledge a keep-alive PING within this
    /// time is disconnected. Milliseconds, 1..=300000 (default 20000).
    pub http2_keepalive_timeout_ms: u64,
    /// A connection whose client takes none of the data the gateway has for it
    /// (its socket refuses every write) for this long is dropped (nginx's
    /// `send_timeout`). Milliseconds, 1..=3600000 (default 60000).
    pub send_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            http2_keepalive_interval_ms: 30_000,
            http2_keepalive_timeout_ms: 20_000,
            send_timeout_ms: 60_000,
        }
    }
}

/// `tracing:` section. Off by default: the request path is then unchanged.
///
/// When enabled, every request runs in a `SERVER` span (parented on an
/// incoming `traceparent`, `http.route` = matched route template) and every
/// upstream attempt in a `CLIENT` span whose `traceparent` is sent upstream.
/// Spans go wherever the process's subscriber sends them (see
/// `nexus_telemetry::init`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Turn request and upstream spans (and `traceparent` propagation) on.
    pub enabled: bool,
}

/// `dashboard:` section: the admin servers whose `GET /stats` JSON the
/// gateway fetches (server side, same origin for the page) for the cache and
/// consumer panels of `/dashboard`. Absent: the panel says "not configured".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Base URL of the cache proxy's admin server, e.g. `http://127.0.0.1:9380`.
    pub cache_admin: Option<String>,
    /// Base URL of the consumer's admin server, e.g. `http://127.0.0.1:9381`.
    pub consumer_admin: Option<String>,
}
