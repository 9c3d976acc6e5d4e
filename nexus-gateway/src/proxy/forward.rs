//! The attempt loop: pick, admit, call with a timeout, record, maybe retry.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body::Body as _;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};

use super::client::Clients;
use super::seams::{AttemptOutcome, Breakers, CircuitTransition, Upstreams};
use super::transform::{self, Wrapped};
use crate::body::GatewayBody;
use crate::config::{ProxySettings, TransformSettings};
use crate::events::{EventSink, GatewayEvent};
use crate::metrics::Metrics;
use crate::response::{GatewayResponse, error};

/// The `/api/*` handler.
pub struct Proxy {
    clients: Clients,
    upstreams: Arc<dyn Upstreams>,
    breakers: Option<Arc<dyn Breakers>>,
    settings: ProxySettings,
    transform: TransformSettings,
    metrics: Arc<Metrics>,
    events: Arc<dyn EventSink>,
    /// Retries may add at most 20 % on top of the request rate (plus 10/s), over
    /// a 10 s window, so retries cannot multiply load during an outage.
    budget: TpsBudget,
    /// `tracing.enabled`: a `CLIENT` span per attempt, `traceparent` injected.
    trace: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Largest upstream body read whole before responding (see `small_or_stream`).
pub const SMALL_BODY: usize = 16 * 1024;

/// Why the last attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    NoEndpoint,
    CircuitOpen,
    Timeout,
    Transport,
    Status,
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl Proxy {
    /// Builds the proxy.
    pub fn new(
        settings: ProxySettings,
        transform: TransformSettings,
        upstreams: Arc<dyn Upstreams>,
        breakers: Option<Arc<dyn Breakers>>,
        metrics: Arc<Metrics>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        let clients = Clients::new(&settings);
        let budget = TpsBudget::new(std::time::Duration::from_secs(10), 10, 0.2);
        Self {
            clients,
            upstreams,
            breakers,
            settings,
            transform,
            metrics,
            events,
            budget,
            trace: false,
        }
    }

    /// Runs every upstream attempt in a `CLIENT` span (child of the current
    /// span) and sends its `traceparent` upstream.
    pub fn trace_upstream(mut self, on: bool) -> Self {
        self.trace = on;
        self
    }

    /// The balancer's `/lb-stats` document.
    pub fn lb_stats(&self) -> serde_json::Value {
        self.upstreams.stats()
    }

    /// The breakers' `/cb-stats` document.
    pub fn cb_stats(&self) -> serde_json::Value {
        self.breakers
            .as_ref()
            .map_or_else(|| serde_json::json!({ "enabled": false }), |b| b.stats())
    }

    /// Forwards one `/api/*` request (its URI path is already normalised).
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        request_id: HeaderValue,
        peer: Option<IpAddr>,
    ) -> GatewayResponse {
        let (mut parts, body) = req.into_parts();
        // A reference-counted copy of the client's URI (for events and the response).
        let client_uri = parts.uri.clone();
        let client_path = client_uri.path();
        // Moved into the first attempt's URI; a retry builds it again.
        let Some(first_target) = transform::upstream_path_and_query(&client_uri) else {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "request target cannot be forwarded",
            );
        };
        transform::request_headers(&mut parts.headers, &self.transform, &request_id, peer);
        let replayable = idempotent(&parts.method) && body.is_end_stream();
        let attempts = if replayable {
            self.settings.max_attempts.get()
        } else {
            1
        };
        let mut target = Some(first_target);
        let mut body = Some(body);
        // Endpoints already tried: filled only when a retry follows, so a
        // request answered by its first attempt allocates nothing here.
        let mut tried: Vec<u64> = Vec::new();
        let mut previous: Option<u64> = None;
        let mut last = Failure::NoEndpoint;

        if replayable {
            self.budget.deposit();
        }
        for attempt in 0..attempts {
            if attempt > 0 {
                if !self.budget.withdraw() {
                    tracing::debug!("retry budget exhausted");
                    break;
                }
                if !self.settings.retry_backoff.is_zero() {
                    tokio::time::sleep(self.settings.retry_backoff).await;
                }
            }
            if let Some(id) = previous.take() {
                tried.push(id);
            }
            let Some(picked) = self.upstreams.pick(&tried) else {
                if attempt == 0 || last == Failure::CircuitOpen {
                    last = Failure::NoEndpoint;
                }
                break;
            };
            previous = Some(picked.id);
            let permit = match &self.breakers {
                Some(b) => match b.admit(&picked.url) {
                    Ok(p) => Some(p),
                    Err(_) => {
                        picked
                            .guard
                            .finish(AttemptOutcome::Failure, Default::default());
                        last = Failure::CircuitOpen;
                        continue;
                    }
                },
                None => None,
            };
            let uri = Uri::builder()
                .scheme(picked.scheme.clone())
                .authority(picked.authority.clone())
                .path_and_query(match target.take() {
                    Some(t) => t,
                    // Parsed once already, so this succeeds.
                    None => transform::upstream_path_and_query(&client_uri)
                        .unwrap_or(http::uri::PathAndQuery::from_static("/")),
                })
                .build();
            let Ok(uri) = uri else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "request target cannot be forwarded",
                );
            };
            let up_body = match body.take() {
                Some(b) if !b.is_end_stream() => Either::Left(b),
                _ => Either::Right(Empty::new()),
            };
            let mut up = Request::new(up_body);
            *up.method_mut() = parts.method.clone();
            *up.uri_mut() = uri;
            *up.headers_mut() = if attempt + 1 == attempts {
                std::mem::take(&mut parts.headers) // last attempt: no copy
            } else {
                parts.headers.clone()
            };
            if !self.settings.http2 {
                // What the pooled client would otherwise format per request.
                let host = transform::host_header(up.uri());
                up.headers_mut().insert(header::HOST, host);
            }
            let started = Instant::now();
            let result = if self.trace {
                up.extensions_mut()
                    .insert(nexus_telemetry::layer::ResendCount(attempt));
                let span = nexus_telemetry::layer::client_span("upstream.proxy", &mut up);
                let call =
                    tokio::time::timeout(self.settings.timeout, self.clients.get().request(up));
                let result = tracing::Instrument::instrument(call, span.clone()).await;
                record_attempt(&span, &result);
                result
            } else {
                tokio::time::timeout(self.settings.timeout, self.clients.get().request(up)).await
            };
            let elapsed = started.elapsed();
            self.metrics
                .record_upstream(&picked.url, elapsed.as_secs_f64() * 1000.0);
            let (outcome, response) = match result {
                Ok(Ok(res)) if res.status().is_server_error() => {
                    last = Failure::Status;
                    (AttemptOutcome::Failure, Some(res))
                }
                Ok(Ok(res)) => (AttemptOutcome::Success, Some(res)),
                Ok(Err(e)) => {
                    tracing::debug!(upstream = %picked.url, error = %e, "upstream transport error");
                    last = Failure::Transport;
                    (AttemptOutcome::Failure, None)
                }
                Err(_) => {
                    tracing::debug!(upstream = %picked.url, "upstream timeout");
                    last = Failure::Timeout;
                    (AttemptOutcome::Failure, None)
                }
            };
            picked.guard.finish(outcome, elapsed);
            if let Some(p) = permit
                && p.record(outcome) == Some(CircuitTransition::Opened)
            {
                self.events.emit(GatewayEvent::CircuitOpened {
                    upstream: picked.url.clone(),
                    method: parts.method.to_string(),
                    url: client_path.to_owned(),
                    correlation_id: request_id.to_str().unwrap_or_default().to_owned(),
                });
            }
            if let Some(res) = response {
                let retry_status = matches!(res.status().as_u16(), 502..=504);
                if outcome == AttemptOutcome::Success || !retry_status || attempt + 1 == attempts {
                    return self.respond(res, client_path, &request_id).await;
                }
            }
        }
        match last {
            Failure::NoEndpoint | Failure::CircuitOpen => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_upstream",
                "no healthy upstream endpoint",
            ),
            Failure::Timeout => error(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                "upstream timed out",
            ),
            Failure::Transport | Failure::Status => error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                "upstream failed after retries",
            ),
        }
    }

    /// Like nginx's proxy buffers: a body with a declared length of at most
    /// [`SMALL_BODY`] bytes is read whole (bounded by the call timeout) and sent
    /// with the headers in one write; anything else streams frame by frame.
    async fn small_or_stream(&self, headers: &http::HeaderMap, body: Incoming) -> GatewayBody {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_none_or(|n| n > SMALL_BODY as u64) {
            return GatewayBody::Stream(body);
        }
        let read = crate::body::read_bounded(body, SMALL_BODY);
        match tokio::time::timeout(self.settings.timeout, read).await {
            Ok(Ok(b)) => GatewayBody::from(b),
            // The upstream broke off mid-body: end the response with an error.
            _ => GatewayBody::boxed(http_body_util::StreamBody::new(futures_util::stream::once(
                async {
                    Err::<http_body::Frame<bytes::Bytes>, crate::body::BoxError>(
                        "upstream body failed".into(),
                    )
                },
            ))),
        }
    }

    async fn respond(
        &self,
        res: http::Response<Incoming>,
        client_path: &str,
        request_id: &HeaderValue,
    ) -> GatewayResponse {
        let (mut parts, body) = res.into_parts();
        transform::strip_hop_by_hop(&mut parts.headers);
        if !self.transform.wrap_for(client_path) || !transform::is_json(&parts.headers) {
            let body = self.small_or_stream(&parts.headers, body).await;
            return http::Response::from_parts(parts, body);
        }
        let body = GatewayBody::Stream(body);
        let cap = self.transform.max_wrap_body_bytes;
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > cap as u64) {
            return http::Response::from_parts(parts, body); // too large to wrap: passed through untouched
        }
        match transform::wrap_json(body, cap, request_id).await {
            Ok(Wrapped::Body(b)) | Ok(Wrapped::NotJson(b)) => {
                parts.headers.remove(header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                http::Response::from_parts(parts, GatewayBody::from(b))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot wrap upstream JSON");
                error(StatusCode::BAD_GATEWAY, "upstream_body", &e.to_string())
            }
        }
    }
}

/// Records an attempt's outcome on its `CLIENT` span.
fn record_attempt<B, E>(
    span: &tracing::Span,
    result: &Result<Result<http::Response<B>, E>, tokio::time::error::Elapsed>,
) {
    match result {
        Ok(Ok(res)) => {
            let status = res.status();
            span.record("http.response.status_code", status.as_u16());
            if status.is_client_error() || status.is_server_error() {
                span.record("otel.status_code", "error");
            }
        }
        _ => {
            span.record("otel.status_code", "error");
        }
    }
}
