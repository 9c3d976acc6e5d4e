//! [`Receiver`]: a real OTLP/HTTP trace receiver on a free loopback port
//! (crate feature `otlp`).
//!
//! An exporter under test (`opentelemetry-otlp` with `http-proto`, as
//! `nexus-telemetry` uses) is pointed at [`Receiver::endpoint`] and sends
//! `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`. The receiver
//! decodes it with the protocol's own generated types (`opentelemetry-proto`),
//! answers the protocol's `ExportTraceServiceResponse`, and keeps every span
//! with the `service.name` of its resource until the test [drains](Receiver::drain)
//! them.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/traces`, `application/x-protobuf`, a valid export | `200`, `ExportTraceServiceResponse` (protobuf) |
//! | the same with a body that does not decode | `400` |
//! | a body over [`MAX_EXPORT_BYTES`] | `413` |
//! | another content type (OTLP/JSON is not supported) | `415` |
//! | another method on [`TRACES_PATH`] | `405` |
//! | any other path | `404` |
//!
//! Bounds: at most [`SPAN_CAPACITY`] spans are kept between drains (further
//! ones are counted in [`Receiver::dropped`]), request bodies are read up to
//! [`MAX_EXPORT_BYTES`], at most [`MAX_CONNECTIONS`] connections are served
//! at once (more wait in the listen backlog). Dropping the receiver closes the
//! listener and every connection.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> nexus_testkit::Result<()> {
//! let mut receiver = nexus_testkit::otlp::Receiver::start().await?;
//! // Give the exporter `receiver.endpoint()`; it appends `/v1/traces`.
//! assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
//! assert!(receiver.drain().is_empty());
//! assert_eq!((receiver.exports(), receiver.dropped()), (0, 0));
//! # Ok(()) }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Result;

/// The path OTLP/HTTP trace exporters post to, below the endpoint.
pub const TRACES_PATH: &str = "/v1/traces";
/// Content type of an OTLP/HTTP protobuf export (and of the answer).
pub const PROTOBUF: &str = "application/x-protobuf";
/// Largest export body read; a larger one is answered `413`.
pub const MAX_EXPORT_BYTES: usize = 4 * 1024 * 1024;
/// Spans kept between two drains; further ones are dropped and counted.
pub const SPAN_CAPACITY: usize = 65_536;
/// Connections served at once; further ones wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// One span as received, with the `service.name` of the resource it came
/// under (`None` when the resource had none).
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSpan {
    /// The resource's `service.name`, rendered as by [`value`].
    pub service: Option<String>,
    /// The span as the exporter encoded it.
    pub span: Span,
}

/// A real OTLP/HTTP trace receiver in this process on `127.0.0.1`; see the
/// [module documentation](self).
#[derive(Debug)]
pub struct Receiver {
    addr: SocketAddr,
    spans: mpsc::Receiver<ExportedSpan>,
    counters: Arc<Counters>,
    server: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counters {
    exports: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    spans: mpsc::Sender<ExportedSpan>,
    counters: Arc<Counters>,
}

impl Receiver {
    /// Starts a receiver on a free loopback port.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, spans) = mpsc::channel(SPAN_CAPACITY);
        let counters = Arc::new(Counters::default());
        let state = Arc::new(State {
            spans: tx,
            counters: Arc::clone(&counters),
        });
        let server = tokio::spawn(crate::serve::http1(listener, MAX_CONNECTIONS, move || {
            let state = Arc::clone(&state);
            service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(export(request, &state).await) }
            })
        }));
        Ok(Self {
            addr,
            spans,
            counters,
            server,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the OTLP endpoint to give an exporter, which
    /// appends [`TRACES_PATH`].
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received since the last drain, in arrival order.
    pub fn drain(&mut self) -> Vec<ExportedSpan> {
        let mut out = Vec::new();
        while let Ok(span) = self.spans.try_recv() {
            out.push(span);
        }
        out
    }

    /// [`drain`](Self::drain) without the service names.
    pub fn drain_spans(&mut self) -> Vec<Span> {
        self.drain().into_iter().map(|s| s.span).collect()
    }

    /// Export requests answered `200` so far.
    pub fn exports(&self) -> u64 {
        self.counters.exports.load(Ordering::Relaxed)
    }

    /// Spans dropped because [`SPAN_CAPACITY`] were waiting to be drained.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Aborting the accept task also aborts every connection.
        self.server.abort();
    }
}

/// The attribute `key` of `span`, rendered as by [`value`].
pub fn attr(span: &Span, key: &str) -> Option<String> {
    find(&span.attributes, key)
}

/// A string value as itself, integers, booleans and doubles in their usual
/// text form, anything else (arrays, maps, bytes) in its `Debug` form.
pub fn value(any: &AnyValue) -> Option<String> {
    Some(match any.value.as_ref()? {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// Lower-case hex of a trace or span id, as in a `traceparent` header.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn find(attributes: &[KeyValue], key: &str) -> Option<String> {
    value(attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?)
}

async fn export(request: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if request.uri().path() != TRACES_PATH {
        return status(StatusCode::NOT_FOUND);
    }
    if request.method() != Method::POST {
        let mut res = status(StatusCode::METHOD_NOT_ALLOWED);
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    if request.headers().get(header::CONTENT_TYPE) != Some(&HeaderValue::from_static(PROTOBUF)) {
        return status(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let body = match Limited::new(request.into_body(), MAX_EXPORT_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return status(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => return status(StatusCode::BAD_REQUEST),
    };
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return status(StatusCode::BAD_REQUEST);
    };
    for resource_spans in export.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| find(&r.attributes, "service.name"));
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let span = ExportedSpan {
                service: service.clone(),
                span,
            };
            if state.spans.try_send(span).is_err() {
                state.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    state.counters.exports.fetch_add(1, Ordering::Relaxed);
    let mut res = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
    res
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = code;
    res
}
