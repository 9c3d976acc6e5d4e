//! Typed, validated proxy configuration.
//!
//! Built once (usually through [`ProxyConfig::builder`]) and validated by
//! [`ProxyConfigBuilder::build`]; nothing in the proxy re-reads or re-parses it.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::ConfigError;

/// Credentials sent to Redis (`AUTH [username] password`) or expected from clients.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name; `None` means the `default` user (`AUTH password`).
    pub username: Option<String>,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the proxy sends traffic: a parsed `redis://[[user]:password@]host:port[/db]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// `host:port` as written (resolved on every connect, so DNS changes are seen).
    pub host_port: String,
    /// Credentials the proxy authenticates its upstream connections with.
    pub credentials: Option<Credentials>,
    /// Logical database selected on every upstream connection (default 0).
    pub db: u32,
}

impl UpstreamAddr {
    /// Parses `redis://[[user]:password@]host[:port][/db]` (port defaults to 6379).
    pub fn parse(url: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::InvalidUpstream {
            url: redact(url),
            reason: why.to_owned(),
        };
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| bad("only redis:// URLs are supported (no TLS yet)"))?;
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (a, d.parse().map_err(|_| bad("database must be a number"))?),
            None => (rest, 0),
        };
        let (creds, host) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or(("", userinfo));
                let credentials = Credentials {
                    username: (!user.is_empty()).then(|| user.to_owned()),
                    password: pass.to_owned(),
                };
                (Some(credentials), host)
            }
            None => (None, authority),
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let host_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else if host.contains(':') && !host.ends_with(']') {
            return Err(bad("port must be a number 0-65535"));
        } else {
            format!("{host}:6379")
        };
        Ok(Self {
            host_port,
            credentials: creds,
            db,
        })
    }
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Which credentials clients must present to the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Clients authenticate with the same credentials the proxy uses upstream
    /// (no upstream password means no client password). The default: putting the
    /// proxy in front of a protected Redis does not open it up.
    #[default]
    SameAsUpstream,
    /// No client authentication; `AUTH` is answered like a Redis without a password.
    Open,
    /// Clients must present these credentials.
    Required(Credentials),
}

/// Proxy configuration. Construct with [`ProxyConfig::builder`] or [`Default`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Address to listen on (default `127.0.0.1:6380`, as in the seed).
    pub listen: SocketAddr,
    /// Upstream Redis (default `redis://127.0.0.1:6379`).
    pub upstream: UpstreamAddr,
    /// Client authentication mode.
    pub client_auth: ClientAuth,
    /// Shared, multiplexed upstream connections (default 2).
    pub pool_size: NonZeroUsize,
    /// Maximum concurrently connected clients; further connections are accepted,
    /// answered `-ERR max number of clients reached` and closed (default 10,000).
    pub max_clients: NonZeroUsize,
    /// Maximum clients holding a dedicated (pinned) upstream connection; the command
    /// that would pin one more is answered with an error (default 1,024).
    pub max_pinned: NonZeroUsize,
    /// Reply slots buffered per client before the proxy stops reading its socket
    /// (TCP backpressure); each slot holds up to `max_batch` commands (default 128).
    pub pipeline_depth: NonZeroUsize,
    /// Most commands forwarded to the pool as one batch (default 256).
    pub max_batch: NonZeroUsize,
    /// Batches queued per upstream connection before senders wait (default 1,024).
    pub upstream_queue: NonZeroUsize,
    /// Largest bulk string accepted from a client (default 512 MiB, as Redis).
    pub max_bulk_len: usize,
    /// Most elements in a client command (default 1,048,576).
    pub max_elements: usize,
    /// Longest inline command line (default 64 KiB, as Redis).
    pub max_inline_len: usize,
    /// Timeout for connecting to (and authenticating with) Redis (default 2 s).
    pub connect_timeout: Duration,
    /// First reconnect delay after a failed connect; doubles up to `backoff_max` (default 50 ms).
    pub backoff_initial: Duration,
    /// Longest reconnect delay (default 2 s).
    pub backoff_max: Duration,
    /// How long graceful shutdown waits for clients to finish (default 5 s).
    pub shutdown_grace: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        let n = |v: usize| NonZeroUsize::new(v).unwrap_or(NonZeroUsize::MIN);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6380)),
            upstream: UpstreamAddr {
                host_port: "127.0.0.1:6379".into(),
                credentials: None,
                db: 0,
            },
            client_auth: ClientAuth::SameAsUpstream,
            pool_size: n(2),
            max_clients: n(10_000),
            max_pinned: n(1_024),
            pipeline_depth: n(128),
            max_batch: n(256),
            upstream_queue: n(1_024),
            max_bulk_len: 512 * 1024 * 1024,
            max_elements: 1 << 20,
            max_inline_len: 64 * 1024,
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ProxyConfig {
    /// Starts a builder from the defaults.
    pub fn builder() -> ProxyConfigBuilder {
        ProxyConfigBuilder {
            config: Self::default(),
            upstream_url: None,
            error: None,
        }
    }

    /// The credentials clients must present, after resolving [`ClientAuth::SameAsUpstream`].
    pub fn effective_client_auth(&self) -> Option<&Credentials> {
        match &self.client_auth {
            ClientAuth::SameAsUpstream => self.upstream.credentials.as_ref(),
            ClientAuth::Open => None,
            ClientAuth::Required(c) => Some(c),
        }
    }

    pub(crate) fn client_limits(&self) -> crate::resp::Limits {
        crate::resp::Limits {
            max_bulk_len: self.max_bulk_len,
            max_elements: self.max_elements,
            max_inline_len: self.max_inline_len,
            ..crate::resp::Limits::default()
        }
    }
}

/// Builder for [`ProxyConfig`]; [`build`](Self::build) validates.
#[derive(Debug)]
pub struct ProxyConfigBuilder {
    config: ProxyConfig,
    upstream_url: Option<String>,
    error: Option<ConfigError>,
}

macro_rules! nonzero_setter {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        pub fn $name(mut self, value: usize) -> Self {
            match NonZeroUsize::new(value) {
                Some(v) => self.config.$name = v,
                None => self.fail(ConfigError::Zero(stringify!($name))),
            }
            self
        }
    )*};
}

impl ProxyConfigBuilder {
    fn fail(&mut self, e: ConfigError) {
        self.error.get_or_insert(e);
    }

    /// Listen address.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// Upstream URL, `redis://[[user]:password@]host:port[/db]`.
    pub fn upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream_url = Some(url.into());
        self
    }

    /// Client authentication mode.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.config.client_auth = auth;
        self
    }

    nonzero_setter!(
        /// Number of shared upstream connections.
        pool_size,
        /// Maximum connected clients.
        max_clients,
        /// Maximum clients with a pinned upstream connection.
        max_pinned,
        /// Reply slots buffered per client.
        pipeline_depth,
        /// Commands per forwarded batch.
        max_batch,
        /// Batches queued per upstream connection.
        upstream_queue,
    );

    /// Largest bulk string accepted from a client.
    pub fn max_bulk_len(mut self, bytes: usize) -> Self {
        self.config.max_bulk_len = bytes;
        self
    }

    /// Upstream connect (and handshake) timeout.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// Reconnect backoff bounds.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// Graceful shutdown grace period.
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.config.shutdown_grace = d;
        self
    }

    /// Validates and returns the configuration.
    pub fn build(mut self) -> Result<ProxyConfig, ConfigError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(url) = self.upstream_url.take() {
            self.config.upstream = UpstreamAddr::parse(&url)?;
        }
        let c = self.config;
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::Zero("connect_timeout"));
        }
        if c.backoff_initial.is_zero() || c.backoff_max < c.backoff_initial {
            return Err(ConfigError::Invalid {
                field: "backoff",
                reason: "initial must be > 0 and <= max".into(),
            });
        }
        if c.max_bulk_len == 0 || c.max_elements == 0 || c.max_inline_len < 16 {
            return Err(ConfigError::Invalid {
                field: "limits",
                reason: "max_bulk_len and max_elements must be > 0, max_inline_len >= 16".into(),
            });
        }
        Ok(c)
    }
}
