//! `POST /auth/token`: client credentials -> signed JWT.

use bytes::Bytes;
use http::StatusCode;
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

/// Handles `POST /auth/token`: 400 for bad JSON or a missing field, 401 for bad
/// credentials, 200 with `{"access_token","token_type":"Bearer","expires_in"}`.
pub(crate) async fn issue_token<B>(
    body: B,
    clients: &ClientStore,
    keys: &JwtKeys,
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
    let raw = match Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "body unreadable or larger than 8 KiB",
            );
        }
    };
    let req: TokenRequest = match serde_json::from_slice(&raw) {
        Ok(r) => r,
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
