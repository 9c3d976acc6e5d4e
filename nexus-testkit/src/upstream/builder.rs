//! [`HttpUpstreamBuilder`]: options of an [`HttpUpstream`].

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;

use super::{
    HttpUpstream, bind,
    script::{Script, Shared},
    serve, status_option,
};
use crate::{Error, Result};

/// Builds an [`HttpUpstream`].
#[derive(Debug, Clone)]
#[must_use]
pub struct HttpUpstreamBuilder {
    pub(super) script: Script,
    pub(super) status: u16,
    pub(super) failure_status: u16,
    pub(super) port: Option<u16>,
    pub(super) name: Option<String>,
    pub(super) seed: u64,
}

impl HttpUpstreamBuilder {
    /// Answers every request with this status and JSON body (default `200 {"ok":true}`).
    pub fn json(mut self, status: u16, body: impl Into<Bytes>) -> Self {
        self.status = status;
        self.script.body = body.into();
        self
    }

    /// Waits this long before answering each request.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.script.latency = latency;
        self
    }

    /// Answers this share of requests (in `[0, 1]`) with the failure status
    /// (default 500), drawn from a generator seeded by [`seed`](Self::seed).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.script.failure_rate = rate;
        self
    }

    /// Status of injected failures (default 500).
    pub fn failure_status(mut self, status: u16) -> Self {
        self.failure_status = status;
        self
    }

    /// Seed of the failure generator (default 0): the same seed and request
    /// order give the same failures.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Listens on this port instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Name sent in the [`UPSTREAM_HEADER`](super::UPSTREAM_HEADER) response header (default `127.0.0.1:PORT`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Binds the port and starts serving on the current tokio runtime.
    pub async fn start(mut self) -> Result<HttpUpstream> {
        self.script.status = status_option("json", self.status)?;
        self.script.failure_status = status_option("failure_status", self.failure_status)?;
        let rate = self.script.failure_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(Error::InvalidOption {
                option: "failure_rate",
                reason: format!("{rate} is not in [0, 1]"),
            });
        }
        let listener = bind(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            self.port.unwrap_or(0),
        )))?;
        let addr = listener.local_addr()?;
        let name = self.name.unwrap_or_else(|| addr.to_string());
        let shared = Arc::new(Shared::new(name, self.script, self.seed));
        let server = tokio::spawn(serve(listener, shared.clone()));
        Ok(HttpUpstream {
            shared,
            addr,
            server: Mutex::new(Some(server)),
        })
    }
}
