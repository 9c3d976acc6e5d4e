//! `POST /auth/token`: client credentials -> signed JWT.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;

use super::ClientStore;
use super::jwt::JwtKeys;
use crate::response::{GatewayResponse, error, json};

/// Largest accepted token request body.
const MAX_BODY: usize = 8 * 1024;

#[derive(Deserialize)]
struct TokenRequest {
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Handles `POST /auth/token`: 400 for bad JSON or a missing or wrongly typed
/// field (named), 401 for bad credentials, 408 when the body has not arrived
/// within `body_timeout`, 200 with `{"access_token","token_type":"Bearer","expires_in"}`.
/// Every answer carries `Cache-Control: no-store` and `Pragma: no-cache`
/// (RFC 6749 §5.1).
pub(crate) async fn issue_token<B>(
    body: B,
    clients: &ClientStore,
    keys: &JwtKeys,
    body_timeout: Duration,
) -> GatewayResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    let mut res = issue(body, clients, keys, body_timeout).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

async fn issue<B>(
    body: B,
    clients: &ClientStore,
    keys: &JwtKeys,
    body_timeout: Duration,
) -> GatewayResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    if !keys.can_issue() {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "token_issue_disabled",
            "this gateway verifies RS256/ES256 tokens from an identity provider and does not issue tokens",
        );
    }
    let read = tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY).collect());
    let raw = match read.await {
        Ok(Ok(c)) => c.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received in time",
            );
        }
        Ok(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "body unreadable or larger than 8 KiB",
            );
        }
    };
    let req: TokenRequest = match serde_json::from_slice(&raw) {
        Ok(r) => r,
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return error(StatusCode::BAD_REQUEST, "bad_request", field_error(&raw));
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad_request", "body must be JSON"),
    };
    let (Some(id), Some(secret)) = (req.client_id, req.client_secret) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "client_id and client_secret are required",
        );
    };
    if !clients.verify(&id, &secret) {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client credentials",
        );
    }
    match keys.issue(&id) {
        Some((token, ttl)) => json(
            StatusCode::OK,
            &serde_json::json!({ "access_token": token, "token_type": "Bearer", "expires_in": ttl }),
        ),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "token_issue_failed",
            "could not sign token",
        ),
    }
}

/// Why a well-formed JSON body is not a token request, naming the field.
fn field_error(raw: &[u8]) -> &'static str {
    let Ok(serde_json::Value::Object(m)) = serde_json::from_slice(raw) else {
        return "body must be a JSON object";
    };
    let wrong = |f: &str| m.get(f).is_some_and(|v| !v.is_string() && !v.is_null());
    if wrong("client_id") {
        "client_id must be a string"
    } else if wrong("client_secret") {
        "client_secret must be a string"
    } else {
        "body must be a JSON object with string client_id and client_secret, each once"
    }
}
