//! What the client and server spans record when their response future ends.

use http::{Response, StatusCode};
use tracing::Span;

/// Which side of the call a span stands for; the two differ in which
/// statuses are errors, as the OpenTelemetry HTTP conventions say: a `4xx`
/// is the client's failure, but a server that answers one did its job.
#[derive(Debug, Clone, Copy)]
pub(super) enum Side {
    Client,
    Server,
}

impl Side {
    fn is_error(self, status: StatusCode) -> bool {
        match self {
            Self::Client => status.is_client_error() || status.is_server_error(),
            Self::Server => status.is_server_error(),
        }
    }
}

/// Records `http.response.status_code` of a response, and `otel.status_code
/// = error` for an error status (per `side`) or a failed call.
pub(super) fn record<RB, E>(span: &Span, side: Side, out: &Result<Response<RB>, E>) {
    match out {
        Ok(res) => {
            let status = res.status();
            span.record("http.response.status_code", status.as_u16());
            if side.is_error(status) {
                span.record("otel.status_code", "error");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "error");
        }
    }
}
