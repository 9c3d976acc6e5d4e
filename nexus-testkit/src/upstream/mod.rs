//! [`HttpUpstream`]: an in-process HTTP/1.1 server with scripted behaviour.

mod builder;
mod script;
mod service;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use hyper::service::service_fn;
use tokio::{
    net::{TcpListener, TcpSocket},
    task::JoinHandle,
};

pub use builder::HttpUpstreamBuilder;
pub use script::{MAX_BODY_BYTES, REQUEST_LOG_CAPACITY, RecordedRequest};
use script::{Script, Shared};

use crate::{Error, Result};

/// Path of the echo endpoint: answers `200` with the request as JSON
/// (`{"method","uri","headers":{..},"body"}`), ignoring the script.
pub const ECHO_PATH: &str = "/_echo";

/// Response header naming the upstream that answered (its [`name`](HttpUpstream::name)).
pub const UPSTREAM_HEADER: &str = "x-nexus-upstream";

/// At most this many connections are served at once; further ones wait in
/// the listen backlog.
pub const MAX_CONNECTIONS: usize = 1024;

/// An HTTP/1.1 server in this process on `127.0.0.1`, answering per a script
/// that tests change while it runs: fixed JSON, latency, a failure rate,
/// status overrides, dropped connections. It counts and records requests,
/// echoes them on [`ECHO_PATH`], and can stop and restart on the same port.
///
/// ```no_run
/// # async fn demo() -> nexus_testkit::Result<()> {
/// use std::time::Duration;
/// let up = nexus_testkit::HttpUpstream::builder()
///     .json(200, r#"{"ok":true}"#)
///     .latency(Duration::from_millis(5))
///     .start()
///     .await?;
/// // ... point the gateway at up.url() ...
/// up.set_status(503); // now every answer is a 503
/// up.stop().await; // connections refused
/// up.restart().await?; // same port again
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct HttpUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl HttpUpstream {
    /// Starts an upstream answering `200 {"ok":true}` on a free port.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for an upstream.
    pub fn builder() -> HttpUpstreamBuilder {
        HttpUpstreamBuilder {
            script: Script::default(),
            status: 200,
            failure_status: 500,
            port: None,
            name: None,
            seed: 0,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The name sent in [`UPSTREAM_HEADER`].
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Requests received so far (echo requests included), across restarts.
    pub fn requests(&self) -> u64 {
        self.shared.requests()
    }

    /// Headers of the last request received.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        self.shared.last().map(|request| request.headers)
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.last()
    }

    /// The last [`REQUEST_LOG_CAPACITY`] requests, oldest first.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded()
    }

    /// Zeroes the request count and clears the request log.
    pub fn reset_requests(&self) {
        self.shared.reset();
    }

    /// Answers with this status from now on (body unchanged).
    ///
    /// # Panics
    /// If `status` is not in `100..=999`: a mistake in the test itself.
    #[track_caller]
    pub fn set_status(&self, status: u16) {
        let status = status_or_panic(status);
        self.shared.update(|script| script.status = status);
    }

    /// Answers with this status and JSON body from now on.
    ///
    /// # Panics
    /// If `status` is not in `100..=999`.
    #[track_caller]
    pub fn set_json(&self, status: u16, body: impl Into<Bytes>) {
        let status = status_or_panic(status);
        let body = body.into();
        self.shared.update(|script| {
            script.status = status;
            script.body = body;
        });
    }

    /// Waits this long before each answer from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.update(|script| script.latency = latency);
    }

    /// Fails this share of requests from now on.
    ///
    /// # Panics
    /// If `rate` is not in `[0, 1]`.
    #[track_caller]
    pub fn set_failure_rate(&self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "failure rate {rate} is not in [0, 1]"
        );
        self.shared.update(|script| script.failure_rate = rate);
    }

    /// When `true`, closes each connection without answering (after any latency).
    pub fn set_abort(&self, abort: bool) {
        self.shared.update(|script| script.abort = abort);
    }

    /// Whether it is serving (not [`stop`](Self::stop)ped).
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    /// Closes the listener and every open connection; new connections are refused.
    pub async fn stop(&self) {
        let server = self.lock().take();
        if let Some(server) = server {
            server.abort();
            // Completes once the task is dropped, so the listener is closed.
            let _ = server.await;
        }
    }

    /// Stops if running, then serves again on the same port with the same
    /// script and counters.
    pub async fn restart(&self) -> Result<()> {
        self.stop().await;
        let listener = bind(self.addr)?;
        let server = tokio::spawn(serve(listener, self.shared.clone()));
        *self.lock() = Some(server);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Option<JoinHandle<()>>> {
        self.server.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        if let Some(server) = self.lock().take() {
            server.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Restart must not wait out TIME_WAIT of the previous incarnation's connections.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket.listen(1024)?)
}

/// Serves `shared`'s script until aborted (see [`crate::serve::http1`]).
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    crate::serve::http1(listener, MAX_CONNECTIONS, move || {
        let shared = shared.clone();
        service_fn(move |request| service::handle(shared.clone(), request))
    })
    .await;
}

fn status_option(option: &'static str, status: u16) -> Result<StatusCode> {
    StatusCode::from_u16(status).map_err(|err| Error::InvalidOption {
        option,
        reason: format!("{status}: {err}"),
    })
}

#[track_caller]
fn status_or_panic(status: u16) -> StatusCode {
    match StatusCode::from_u16(status) {
        Ok(status) => status,
        Err(err) => panic!("invalid HTTP status {status}: {err}"),
    }
}
