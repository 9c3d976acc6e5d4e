//! Gateway-made responses: JSON bodies and JSON errors, built in one place.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::GatewayBody;

/// The response type of every gateway service.
pub type GatewayResponse = Response<GatewayBody>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A JSON response with the given status.
pub fn json(status: StatusCode, value: &serde_json::Value) -> GatewayResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    raw_json(status, Bytes::from(body))
}

/// A response with an already-serialised JSON body.
pub fn raw_json(status: StatusCode, body: Bytes) -> GatewayResponse {
    let mut res = Response::new(GatewayBody::from(body));
    *res.status_mut() = status;
    res.headers_mut().insert(header::CONTENT_TYPE, JSON);
    res
}

/// A JSON error `{"error": code, "message": message}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> GatewayResponse {
    json(
        status,
        &serde_json::json!({ "error": code, "message": message }),
    )
}
