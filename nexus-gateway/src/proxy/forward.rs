//! The attempt loop: pick, admit, call with a timeout, record, maybe retry.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body::Body as _;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};

use super::UpstreamBody;
use super::client::Clients;
use super::seams::{AttemptOutcome, Breakers, CircuitTransition, Upstreams};
use super::stream::{ClientBody, ClientFault, ClientState, FailureSink, UpstreamStream};
use super::transform::{self, Wrapped};
use crate::body::{GatewayBody, ReadUpTo};
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

/// Why one upstream call produced no response.
enum CallError {
    /// The connection or the exchange failed.
    Transport(hyper_util::client::legacy::Error),
    /// No response headers within `proxy.timeout` (counted from the end of
    /// the client's upload, see [`Proxy::call`]).
    Timeout,
    /// The client's request body failed: not the upstream's fault.
    Client(ClientFault),
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
        transform::request_headers(
            &mut parts.headers,
            &self.transform,
            &request_id,
            peer,
            client_uri.authority(),
        );
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
        // Upstream calls made (for the 502 message).
        let mut calls = 0u32;

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
            let mut client = None;
            let up_body = match body.take() {
                Some(b) if !b.is_end_stream() => {
                    let (b, state) = ClientBody::new(b, self.settings.body_idle_timeout);
                    client = Some(state);
                    Either::Left(b)
                }
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
                let call = self.call(up, client.as_deref());
                let result = tracing::Instrument::instrument(call, span.clone()).await;
                record_attempt(&span, &result);
                result
            } else {
                self.call(up, client.as_deref()).await
            };
            calls += 1;
            let elapsed = started.elapsed();
            // A client fault (stalled or broken upload) says nothing about the
            // upstream's latency: no sample for it.
            if !matches!(result, Err(CallError::Client(_))) {
                self.metrics
                    .record_upstream(&picked.url, elapsed.as_secs_f64() * 1000.0);
            }
            let mut fault = None;
            let (mut outcome, response) = match result {
                Ok(res) if res.status().is_server_error() => {
                    last = Failure::Status;
                    (AttemptOutcome::Failure, Some(res))
                }
                Ok(res) => (AttemptOutcome::Success, Some(res)),
                Err(CallError::Transport(e)) => {
                    tracing::debug!(upstream = %picked.url, error = %e, "upstream transport error");
                    last = Failure::Transport;
                    (AttemptOutcome::Failure, None)
                }
                Err(CallError::Timeout) => {
                    tracing::debug!(upstream = %picked.url, "upstream timeout");
                    last = Failure::Timeout;
                    (AttemptOutcome::Failure, None)
                }
                Err(CallError::Client(f)) => {
                    tracing::debug!(upstream = %picked.url, fault = ?f, "client request body failed");
                    fault = Some(f);
                    (AttemptOutcome::Ignored, None)
                }
            };
            // The response to return, its body read first when it is buffered
            // (an upstream whose body stalls or breaks counts as failed).
            let mut reply = None;
            if let Some(res) = response {
                let retry_status = matches!(res.status().as_u16(), 502..=504);
                if outcome == AttemptOutcome::Success || !retry_status || attempt + 1 == attempts {
                    reply = Some(
                        match self
                            .respond(res, &parts.method, client_path, &request_id, &picked.url)
                            .await
                        {
                            Ok(r) => r,
                            Err(f) => {
                                tracing::debug!(upstream = %picked.url, failure = ?f, "upstream body failed");
                                outcome = AttemptOutcome::Failure;
                                body_failure(f)
                            }
                        },
                    );
                }
            }
            let mut guard = picked.guard;
            guard.record(outcome, elapsed);
            match reply.as_mut().map(http::Response::body_mut) {
                // A streamed body keeps the attempt in flight and reports a
                // failure mid-stream to the balancer too (as to the breaker).
                Some(GatewayBody::Upstream(s)) => {
                    s.attach(guard, started, outcome == AttemptOutcome::Success);
                }
                _ => drop(guard),
            }
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
            if let Some(r) = reply {
                return r;
            }
            if let Some(f) = fault {
                return client_fault(f);
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
            Failure::Transport | Failure::Status if calls > 1 => error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                &format!("upstream failed after {calls} attempts"),
            ),
            Failure::Transport | Failure::Status => error(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                "upstream request failed",
            ),
        }
    }

    /// One upstream call, bounded by `proxy.timeout`.
    ///
    /// With a request body the limit counts from the body's last progress: a
    /// client's slow upload does not use up the upstream's time. The client
    /// may pause at most `proxy.body_idle_timeout` between frames
    /// ([`ClientBody`]); an upload that stalls that long is the client's fault
    /// (408), an upstream that does not read it or does not answer within
    /// `proxy.timeout` after it is the upstream's (504).
    async fn call(
        &self,
        up: Request<UpstreamBody>,
        client: Option<&ClientState>,
    ) -> Result<http::Response<Incoming>, CallError> {
        let call = self.clients.get().request(up);
        let mut call = std::pin::pin!(call);
        let mut deadline = Instant::now() + self.settings.timeout;
        loop {
            match tokio::time::timeout_at(deadline, &mut call).await {
                Ok(Ok(res)) => return Ok(res),
                Ok(Err(e)) => {
                    return Err(match client.and_then(ClientState::fault) {
                        Some(f) => CallError::Client(f),
                        None => CallError::Transport(e),
                    });
                }
                Err(_) => {
                    let Some(c) = client else {
                        return Err(CallError::Timeout);
                    };
                    if let Some(f) = c.fault() {
                        return Err(CallError::Client(f));
                    }
                    // A client pausing its upload has `proxy.body_idle_timeout`
                    // (its body then fails by itself); an upstream holding a
                    // frame or owing the answer has `proxy.timeout`.
                    let limit = if c.waiting_for_client() {
                        self.settings.body_idle_timeout
                    } else {
                        self.settings.timeout
                    };
                    let next = c.last_progress() + limit;
                    if next > Instant::now() {
                        deadline = next;
                        continue;
                    }
                    return Err(if c.waiting_for_client() {
                        CallError::Client(ClientFault::TimedOut)
                    } else {
                        CallError::Timeout
                    });
                }
            }
        }
    }

    /// A streamed upstream body: idle limit `proxy.body_idle_timeout`,
    /// failures counted against `upstream`'s breaker.
    fn stream(&self, prefix: bytes::Bytes, body: Incoming, upstream: &Arc<str>) -> GatewayBody {
        let sink = self.breakers.as_ref().map(|b| FailureSink {
            breakers: Arc::clone(b),
            upstream: Arc::clone(upstream),
        });
        GatewayBody::Upstream(UpstreamStream::new(
            prefix,
            body,
            self.settings.body_idle_timeout,
            sink,
        ))
    }

    /// Builds the client's response. Like nginx's proxy buffers, a body with
    /// a declared length of at most [`SMALL_BODY`] bytes is read whole and sent
    /// with the headers in one write; on a wrapped route a JSON body is read
    /// whole (up to `max_wrap_body_bytes`) and wrapped. Either read must end
    /// within `proxy.timeout` from its start, else the upstream failed (`Err`:
    /// nothing was sent yet, so the client gets a 504 / 502). Anything else,
    /// and a JSON body found too large only while reading it (no declared
    /// length), streams through unwrapped, with `proxy.body_idle_timeout` as
    /// idle limit.
    async fn respond(
        &self,
        res: http::Response<Incoming>,
        method: &Method,
        client_path: &str,
        request_id: &HeaderValue,
        upstream: &Arc<str>,
    ) -> Result<GatewayResponse, Failure> {
        let (mut parts, body) = res.into_parts();
        transform::strip_hop_by_hop(&mut parts.headers);
        // HEAD (no body to wrap: the GET's length must stand), 204 and 304 pass.
        let wrap = self.transform.wrap_for(client_path)
            && transform::is_json(&parts.headers)
            && *method != Method::HEAD
            && !matches!(
                parts.status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
            );
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let cap = if wrap {
            self.transform.max_wrap_body_bytes
        } else {
            SMALL_BODY
        };
        let buffer = if wrap {
            declared.is_none_or(|n| n <= cap as u64)
        } else {
            declared.is_some_and(|n| n <= SMALL_BODY as u64)
        };
        if !buffer {
            let body = self.stream(bytes::Bytes::new(), body, upstream);
            return Ok(http::Response::from_parts(parts, body));
        }
        let read = tokio::time::timeout(self.settings.timeout, crate::body::read_up_to(body, cap));
        let raw = match read.await {
            Ok(Ok(ReadUpTo::Whole(b))) => b,
            Ok(Ok(ReadUpTo::Over(prefix, rest))) => {
                // Too large to wrap: the bytes read, then the rest, unwrapped.
                let body = self.stream(prefix, rest, upstream);
                return Ok(http::Response::from_parts(parts, body));
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "upstream body failed");
                return Err(Failure::Transport);
            }
            Err(_) => return Err(Failure::Timeout),
        };
        if !wrap {
            return Ok(http::Response::from_parts(parts, GatewayBody::from(raw)));
        }
        let (Wrapped::Body(b) | Wrapped::NotJson(b)) = transform::wrap_bytes(raw, request_id);
        parts.headers.remove(header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
        Ok(http::Response::from_parts(parts, GatewayBody::from(b)))
    }
}

/// The answer when the upstream's response body failed before anything was sent.
fn body_failure(f: Failure) -> GatewayResponse {
    if f == Failure::Timeout {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "upstream response body timed out",
        )
    } else {
        error(
            StatusCode::BAD_GATEWAY,
            "upstream_body",
            "upstream response body failed",
        )
    }
}

/// The answer when the client's request body failed; the connection is closed
/// (the rest of the body cannot be read). A client that went away gets 499,
/// nginx's "client closed request", seen only in logs and metrics.
fn client_fault(f: ClientFault) -> GatewayResponse {
    let mut res = match f {
        ClientFault::Malformed => error(
            StatusCode::BAD_REQUEST,
            "bad_request_body",
            "request body is malformed",
        ),
        ClientFault::TimedOut => error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "request body not received in time",
        ),
        ClientFault::Aborted => error(
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "client_closed_request",
            "client closed the connection mid-request",
        ),
    };
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// Records an attempt's outcome on its `CLIENT` span.
fn record_attempt<B>(span: &tracing::Span, result: &Result<http::Response<B>, CallError>) {
    match result {
        Ok(res) => {
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
