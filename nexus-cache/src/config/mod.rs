//! Typed, validated proxy configuration.
//!
//! Built once (usually through [`ProxyConfig::builder`]) and validated by
//! [`ProxyConfigBuilder::build`]; nothing in the proxy re-reads or re-parses it.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::error::ConfigError;
use crate::policy::{Policy, PolicyHandle, ReloaderConfig};

mod upstream;

pub use upstream::{ClientAuth, Credentials, UpstreamAddr};

/// Room a command needs besides its largest bulk:
/// [`ProxyConfig::max_command_len`] must be at least
/// [`ProxyConfig::max_bulk_len`] plus this. A `SET` of a value of
/// `max_bulk_len` bytes has under 64 bytes of headers (`*3`, `$3 SET`, two
/// bulk headers of up to 20 digits, CRLFs); the rest leaves room for its
/// key and options (`PX`, `NX`, `GET`, ...) up to about 4,000 bytes.
pub const COMMAND_FRAMING: usize = 4 * 1024;

/// The floor of [`ProxyConfig::max_command_len`]'s default: 1 GiB.
pub const DEFAULT_MAX_COMMAND_LEN: usize = 1 << 30;

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
    /// Longest client command, in bytes: all its arguments and their
    /// framing together. The proxy must hold a whole command before it
    /// forwards it, so this is also the most input it buffers for one
    /// client. A longer command gets `-ERR Protocol error: command longer
    /// than the limit of N bytes (max_command_len)` after the replies due
    /// before it, and the connection closes.
    ///
    /// Unlike Redis's `client-query-buffer-limit` (also 1 GiB by default),
    /// which bounds only the unparsed part of a client's input (Redis moves
    /// each large argument out of that buffer once it is complete), this
    /// bounds the whole command: Redis accepts `RPUSH k <700 KB> <700 KB>
    /// <700 KB>` under a 1 MB query buffer limit, while the proxy with a
    /// 1 MB `max_command_len` refuses it. A multi-value write (`MSET`,
    /// `RPUSH`, `HSET`...) longer than this is refused even if each value
    /// is under `max_bulk_len`.
    ///
    /// Default: the larger of 1 GiB ([`DEFAULT_MAX_COMMAND_LEN`]) and
    /// `max_bulk_len` + 4 KiB ([`COMMAND_FRAMING`]), so that raising
    /// `max_bulk_len` alone keeps a `SET` of a `max_bulk_len` value
    /// possible. Set explicitly ([`ProxyConfigBuilder::max_command_len`]),
    /// it must be at least `max_bulk_len` + 4 KiB, or
    /// [`build`](ProxyConfigBuilder::build) fails.
    pub max_command_len: usize,
    /// Timeout for connecting to (and authenticating with) Redis (default 2 s).
    pub connect_timeout: Duration,
    /// First reconnect delay after a failed connect; doubles up to `backoff_max` (default 50 ms).
    pub backoff_initial: Duration,
    /// Longest reconnect delay (default 2 s).
    pub backoff_max: Duration,
    /// How long graceful shutdown waits for clients to finish (default 5 s).
    /// Also how long the input of a client refused for a protocol error is
    /// still read and discarded after its last reply (a lingering close, so
    /// that closing with unread input does not reset the connection and cut
    /// those replies), unless it closes first or shutdown begins.
    pub shutdown_grace: Duration,
    /// Longest wait for a reply on a shared connection (default 30 s). When the
    /// oldest outstanding batch exceeds it, the connection is considered dead: its
    /// commands are answered `-ERR upstream timeout` and it is reconnected. Pinned
    /// connections have no such bound while they serve (they run blocking
    /// commands on purpose); a pinned session that is ending (refused input)
    /// waits at most this long for Redis to close it.
    pub upstream_timeout: Duration,
    /// The cache policy (default none: the proxy is fully transparent, and
    /// singleflight, hot-key tracking, default TTLs and auto-tagging are off).
    pub policy: Option<PolicySource>,
    /// Address of the admin HTTP server (`/metrics`, `/stats`, `/healthz`;
    /// crate feature `admin`). Default none: no admin server. Nexus examples
    /// use `127.0.0.1:9380`.
    pub admin: Option<SocketAddr>,
    /// Trace one client command in this many with a `cache.command` span
    /// lasting until its reply is written (an event instead on pinned
    /// connections; default none: no spans). The `cache_proxy` example's
    /// `--command-trace-every N`. See `docs/observability.md`.
    pub trace_sample: Option<NonZeroU32>,
}

/// Where the proxy's cache policy comes from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PolicySource {
    /// A compiled policy, fixed for the proxy's lifetime.
    Rules(Policy),
    /// A handle the application keeps and may [`store`](PolicyHandle::store)
    /// new policies into while the proxy runs.
    Handle(PolicyHandle),
    /// A YAML file, loaded when serving starts (an invalid file fails
    /// [`Proxy::serve`](crate::Proxy::serve)) and then reloaded when it
    /// changes; an invalid new version is logged and the old policy stays.
    File(ReloaderConfig),
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
            max_command_len: DEFAULT_MAX_COMMAND_LEN,
            connect_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(30),
            policy: None,
            admin: None,
            trace_sample: None,
        }
    }
}

impl ProxyConfig {
    /// Starts a builder from the defaults.
    pub fn builder() -> ProxyConfigBuilder {
        ProxyConfigBuilder {
            config: Self::default(),
            upstream_url: None,
            max_command_len: None,
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
    /// Set explicitly: validated against `max_bulk_len`, never adjusted.
    max_command_len: Option<usize>,
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

    /// Most elements (arguments) in a client command.
    pub fn max_elements(mut self, n: usize) -> Self {
        self.config.max_elements = n;
        self
    }

    /// Longest inline command line.
    pub fn max_inline_len(mut self, bytes: usize) -> Self {
        self.config.max_inline_len = bytes;
        self
    }

    /// Longest client command (see [`ProxyConfig::max_command_len`]):
    /// at least `max_bulk_len` + [`COMMAND_FRAMING`], or
    /// [`build`](Self::build) fails. Unset, it follows `max_bulk_len`.
    pub fn max_command_len(mut self, bytes: usize) -> Self {
        self.max_command_len = Some(bytes);
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

    /// Reply timeout on shared connections.
    pub fn upstream_timeout(mut self, d: Duration) -> Self {
        self.config.upstream_timeout = d;
        self
    }

    /// Uses a compiled policy (see [`PolicySource::Rules`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.config.policy = Some(PolicySource::Rules(policy));
        self
    }

    /// Uses a policy handle the caller can update (see [`PolicySource::Handle`]).
    pub fn policy_handle(mut self, handle: PolicyHandle) -> Self {
        self.config.policy = Some(PolicySource::Handle(handle));
        self
    }

    /// Loads the policy from a file and reloads it on change (see [`PolicySource::File`]).
    pub fn policy_file(mut self, reload: ReloaderConfig) -> Self {
        self.config.policy = Some(PolicySource::File(reload));
        self
    }

    /// Serves the admin HTTP endpoints on `addr` (see [`ProxyConfig::admin`];
    /// needs the crate feature `admin`, otherwise [`build`](Self::build) fails).
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.config.admin = Some(addr);
        self
    }

    /// Traces one command in `every` (`0` turns spans off, the default).
    pub fn trace_sample(mut self, every: u32) -> Self {
        self.config.trace_sample = NonZeroU32::new(every);
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
        let mut c = self.config;
        c.max_command_len = self.max_command_len.unwrap_or_else(|| {
            DEFAULT_MAX_COMMAND_LEN.max(c.max_bulk_len.saturating_add(COMMAND_FRAMING))
        });
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::Zero("connect_timeout"));
        }
        if c.upstream_timeout.is_zero() {
            return Err(ConfigError::Zero("upstream_timeout"));
        }
        if c.backoff_initial.is_zero() || c.backoff_max < c.backoff_initial {
            return Err(ConfigError::Invalid {
                field: "backoff",
                reason: "initial must be > 0 and <= max".into(),
            });
        }
        if c.admin.is_some() && !cfg!(feature = "admin") {
            return Err(ConfigError::Invalid {
                field: "admin",
                reason: "the admin server needs nexus-cache's `admin` feature".into(),
            });
        }
        if c.max_bulk_len == 0 || c.max_elements == 0 || c.max_inline_len < 16 {
            return Err(ConfigError::Invalid {
                field: "limits",
                reason: "max_bulk_len and max_elements must be > 0, max_inline_len >= 16".into(),
            });
        }
        if c.max_command_len < c.max_bulk_len.saturating_add(COMMAND_FRAMING) {
            return Err(ConfigError::Invalid {
                field: "max_command_len",
                reason: format!(
                    "{} is less than max_bulk_len ({}) + {COMMAND_FRAMING}: a SET of a max_bulk_len value would not fit",
                    c.max_command_len, c.max_bulk_len
                ),
            });
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn builder_validates() {
        let c = ProxyConfig::builder().build().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:6380");
        assert_eq!(c.upstream.host_port, "127.0.0.1:6379");
        let e = ProxyConfig::builder().pool_size(0).build().unwrap_err();
        assert!(e.to_string().contains("pool_size"), "{e}");
        let e = ProxyConfig::builder()
            .backoff(Duration::from_secs(2), Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("backoff"), "{e}");
    }

    #[test]
    fn max_command_len_holds_a_maximal_set() {
        let c = ProxyConfig::builder().build().unwrap();
        assert_eq!(c.max_command_len, 1 << 30);
        // The default bulk limit with its framing fits, one byte less does not.
        let c = ProxyConfig::builder()
            .max_command_len(512 * 1024 * 1024 + COMMAND_FRAMING)
            .build()
            .unwrap();
        assert_eq!(c.max_command_len, 512 * 1024 * 1024 + COMMAND_FRAMING);
        let e = ProxyConfig::builder()
            .max_command_len(512 * 1024 * 1024 + COMMAND_FRAMING - 1)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_command_len"), "{e}");
        // A small command limit needs a small bulk limit.
        let e = ProxyConfig::builder()
            .max_command_len(64 * 1024)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_bulk_len"), "{e}");
        let c = ProxyConfig::builder()
            .max_bulk_len(60 * 1024)
            .max_command_len(64 * 1024)
            .build()
            .unwrap();
        assert_eq!(c.max_command_len, 64 * 1024);
        // Unset, it follows a raised bulk limit (default 1 GiB otherwise).
        let c = ProxyConfig::builder()
            .max_bulk_len(2 << 30)
            .build()
            .unwrap();
        assert_eq!(c.max_command_len, (2 << 30) + COMMAND_FRAMING);
        let c = ProxyConfig::builder()
            .max_bulk_len(60 * 1024)
            .build()
            .unwrap();
        assert_eq!(c.max_command_len, DEFAULT_MAX_COMMAND_LEN);
        // Set explicitly too low for the raised bulk limit: still an error.
        let e = ProxyConfig::builder()
            .max_bulk_len(2 << 30)
            .max_command_len(1 << 30)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_command_len"), "{e}");
        // No overflow on an absurd bulk limit: the default saturates.
        let c = ProxyConfig::builder()
            .max_bulk_len(usize::MAX)
            .build()
            .unwrap();
        assert_eq!(c.max_command_len, usize::MAX);
        let e = ProxyConfig::builder()
            .max_bulk_len(usize::MAX)
            .max_command_len(usize::MAX - 1)
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("max_command_len"), "{e}");
    }

    #[test]
    fn client_auth_defaults_to_upstream_credentials() {
        let c = ProxyConfig::builder()
            .upstream("redis://:pw@h:1")
            .build()
            .unwrap();
        assert_eq!(c.effective_client_auth().unwrap().password, "pw");
        let c = ProxyConfig::builder()
            .upstream("redis://:pw@h:1")
            .client_auth(ClientAuth::Open)
            .build()
            .unwrap();
        assert!(c.effective_client_auth().is_none());
        assert!(
            !format!("{c:?}").contains("pw\""),
            "Debug must redact passwords"
        );
    }
}
