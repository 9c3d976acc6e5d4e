//! Shared test fixtures: a real OTLP/HTTP receiver, a tiny HTTP server, a log buffer.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Serves `handler` over HTTP/1 on a free loopback port, one task per connection.
pub async fn serve<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let h = handler.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A real OTLP/HTTP trace receiver: decodes every `POST /v1/traces` body as an
/// `ExportTraceServiceRequest` and forwards the spans (with their service name).
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<(String, Span)>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        let addr = serve(move |req: Request<Incoming>| {
            let tx = tx.clone();
            async move {
                if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
                    return status(StatusCode::NOT_FOUND);
                }
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let Ok(export) = ExportTraceServiceRequest::decode(body) else {
                    return status(StatusCode::BAD_REQUEST);
                };
                for rs in export.resource_spans {
                    let service = rs
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|kv| kv.key == "service.name")
                        .map(|kv| format!("{:?}", kv.value))
                        .unwrap_or_default();
                    for ss in rs.scope_spans {
                        for span in ss.spans {
                            let _ = tx.try_send((service.clone(), span));
                        }
                    }
                }
                let body = ExportTraceServiceResponse::default().encode_to_vec();
                Response::builder()
                    .header("content-type", "application/x-protobuf")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap()
            }
        })
        .await;
        Self { addr, rx }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn drain(&mut self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        while let Ok(s) = self.rx.try_recv() {
            out.push(s);
        }
        out
    }
}

pub fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// String attribute value of `key` on `span`, rendered.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let v = span
        .attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match v {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
pub struct Buffer(pub Arc<Mutex<Vec<u8>>>);

impl Buffer {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
