//! Test fixtures: a real OTLP/HTTP trace receiver (the approach of
//! `nexus-telemetry/tests/support`) and a minimal HTTP/1.1 GET.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Decodes every `POST /v1/traces` body as an `ExportTraceServiceRequest`
/// and keeps the spans.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    rx: mpsc::Receiver<Span>,
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move { Ok::<_, Infallible>(export(req, tx).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, rx }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far.
    pub fn drain(&mut self) -> Vec<Span> {
        let mut out = Vec::new();
        while let Ok(s) = self.rx.try_recv() {
            out.push(s);
        }
        out
    }
}

async fn export(req: Request<Incoming>, tx: mpsc::Sender<Span>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    if req.method() != http::Method::POST || req.uri().path() != "/v1/traces" {
        *res.status_mut() = StatusCode::NOT_FOUND;
        return res;
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        *res.status_mut() = StatusCode::BAD_REQUEST;
        return res;
    };
    for rs in export.resource_spans {
        for ss in rs.scope_spans {
            for span in ss.spans {
                let _ = tx.try_send(span);
            }
        }
    }
    Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(
            ExportTraceServiceResponse::default().encode_to_vec(),
        )))
        .unwrap()
}

/// Attribute `key` of `span`, rendered as a string.
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

/// `method path` over a fresh connection; returns (status, content type, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let io = async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}
