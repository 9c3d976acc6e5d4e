//! The per-request handler of an [`HttpUpstream`](super::HttpUpstream).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::{
    ECHO_PATH, UPSTREAM_HEADER,
    script::{MAX_BODY_BYTES, RecordedRequest, Shared},
};

/// Returned instead of a response to make hyper drop the connection unanswered.
#[derive(Debug, thiserror::Error)]
#[error("connection aborted on purpose by the test upstream")]
pub(crate) struct Aborted;

/// Records the request, then answers per the current script.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Aborted> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let text = format!(r#"{{"error":"request body rejected: {err}"}}"#);
            return Ok(respond(&shared, StatusCode::PAYLOAD_TOO_LARGE, text.into()));
        }
    };
    let recorded = RecordedRequest {
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
    };
    // Counted on arrival, before any latency: a test whose client timed out
    // can still see that the request reached the upstream.
    let echo = (recorded.uri.path() == ECHO_PATH).then(|| echo_body(&recorded));
    shared.record(recorded);
    if let Some(echo) = echo {
        return Ok(respond(&shared, StatusCode::OK, echo));
    }

    let script = shared.script();
    if !script.latency.is_zero() {
        tokio::time::sleep(script.latency).await;
    }
    if script.abort {
        return Err(Aborted);
    }
    if shared.roll_failure(script.failure_rate) {
        let body = Bytes::from_static(br#"{"error":"injected failure"}"#);
        return Ok(respond(&shared, script.failure_status, body));
    }
    let mut response = respond(&shared, script.status, script.body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(script.content_type),
    );
    Ok(response)
}

fn respond(shared: &Shared, status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(name) = HeaderValue::from_str(&shared.name) {
        headers.insert(UPSTREAM_HEADER, name);
    }
    response
}

/// `{"method","uri","headers":{name: value},"body"}`; repeated headers are
/// joined with `", "` as HTTP allows.
fn echo_body(request: &RecordedRequest) -> Bytes {
    let mut headers = serde_json::Map::new();
    for name in request.headers.keys() {
        let joined = request
            .headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        headers.insert(name.as_str().to_owned(), joined.into());
    }
    let echo = serde_json::json!({
        "method": request.method.as_str(),
        "uri": request.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
    });
    Bytes::from(echo.to_string())
}
