//! The one error type of the test kit.

use std::{io, net::SocketAddr, time::Duration};

/// Why a test server could not be started, probed or stopped.
///
/// Every variant carries what a person needs to fix the problem: the install
/// command for a missing binary, the tail of the server's log for a server that
/// died or never answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server binary is neither named by its environment variable nor on `PATH`.
    #[error("`{binary}` not found ({searched}); install it with:\n    {install}")]
    BinaryNotFound {
        /// Name of the binary, e.g. `redis-server`.
        binary: &'static str,
        /// Where it was looked for, e.g. `NEXUS_TANSU=/bad/path` or `PATH`.
        searched: String,
        /// The exact command that installs it.
        install: &'static str,
    },
    /// The operating system refused to start the process.
    #[error("failed to spawn `{binary}`: {source}")]
    Spawn {
        /// Path of the binary.
        binary: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The process exited while it was starting.
    #[error("{what} on {addr} exited during start-up ({status}); last log lines:\n{log}")]
    Exited {
        /// Which server, e.g. `redis-server`.
        what: &'static str,
        /// The address it was asked to listen on.
        addr: SocketAddr,
        /// Its exit status.
        status: String,
        /// The tail of its log.
        log: String,
    },
    /// The process kept running but did not answer its protocol probe in time.
    #[error("{what} on {addr} did not answer within {timeout:?}; last log lines:\n{log}")]
    NotReady {
        /// Which server.
        what: &'static str,
        /// The address it was asked to listen on.
        addr: SocketAddr,
        /// How long the kit waited.
        timeout: Duration,
        /// The tail of its log.
        log: String,
    },
    /// A helper client (redis-cli, the Kafka interop script) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Client {
        /// The command line that was run.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// An option given to a builder is out of range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option name.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// Any other I/O failure (temporary directory, socket, log file).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Result alias of the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;
