//! The OTLP/HTTP trace receiver, fed over real TCP with hyper's client and
//! protobuf exports built from the protocol's own types.
#![allow(clippy::unwrap_used)]

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use nexus_testkit::otlp::{
    ExportedSpan, MAX_EXPORT_BYTES, PROTOBUF, Receiver, SPAN_CAPACITY, TRACES_PATH, attr, hex,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::{net::TcpStream, time::timeout};

const BOUND: Duration = Duration::from_secs(5);

/// One request on a fresh connection; (status, content type, body).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, String, Bytes) {
    let stream = timeout(BOUND, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "collector")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = timeout(BOUND, sender.send_request(request))
        .await
        .unwrap()
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = timeout(BOUND, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    (status, content_type, body)
}

/// Posts `export` as an exporter would; the answer's status.
async fn post(receiver: &Receiver, export: &ExportTraceServiceRequest) -> StatusCode {
    let body = export.encode_to_vec();
    send(receiver.addr(), "POST", TRACES_PATH, PROTOBUF, body)
        .await
        .0
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn span(name: &str, id: u8, attributes: Vec<KeyValue>) -> Span {
    Span {
        name: name.to_owned(),
        trace_id: vec![0xab; 16],
        span_id: vec![id; 8],
        attributes,
        ..Span::default()
    }
}

fn resource(service: Option<&str>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: service
                .map(|s| vec![kv("service.name", Value::StringValue(s.to_owned()))])
                .unwrap_or_default(),
            ..Resource::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..ScopeSpans::default()
        }],
        ..ResourceSpans::default()
    }
}

#[tokio::test]
async fn keeps_every_span_with_its_service_and_answers_the_protocol() {
    let mut receiver = Receiver::start().await.unwrap();
    assert_eq!(receiver.endpoint(), format!("http://{}", receiver.addr()));
    let export = ExportTraceServiceRequest {
        resource_spans: vec![
            resource(
                Some("gateway"),
                vec![
                    span(
                        "request",
                        1,
                        vec![
                            kv("http.route", Value::StringValue("/api/{id}".into())),
                            kv("http.response.status_code", Value::IntValue(200)),
                            kv("retried", Value::BoolValue(false)),
                        ],
                    ),
                    span("upstream", 2, vec![]),
                ],
            ),
            resource(None, vec![span("orphan", 3, vec![])]),
        ],
    };
    let (status, content_type, body) = send(
        receiver.addr(),
        "POST",
        TRACES_PATH,
        PROTOBUF,
        export.encode_to_vec(),
    )
    .await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, PROTOBUF));
    assert_eq!(
        ExportTraceServiceResponse::decode(body).unwrap(),
        ExportTraceServiceResponse::default()
    );
    assert_eq!(receiver.exports(), 1);

    let got = receiver.drain();
    let names: Vec<(Option<&str>, &str)> = got
        .iter()
        .map(|s| (s.service.as_deref(), s.span.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (Some("gateway"), "request"),
            (Some("gateway"), "upstream"),
            (None, "orphan")
        ]
    );
    let request = &got[0].span;
    assert_eq!(attr(request, "http.route").as_deref(), Some("/api/{id}"));
    assert_eq!(
        attr(request, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(request, "retried").as_deref(), Some("false"));
    assert_eq!(attr(request, "missing"), None);
    assert_eq!(hex(&request.trace_id), "ab".repeat(16));
    assert_eq!(hex(&request.span_id), "0101010101010101");

    // Drained means gone; a second export arrives on its own.
    assert!(receiver.drain().is_empty());
    let again = ExportTraceServiceRequest {
        resource_spans: vec![resource(Some("consumer"), vec![span("handle", 4, vec![])])],
    };
    assert_eq!(post(&receiver, &again).await, StatusCode::OK);
    let spans = receiver.drain_spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "handle");
    assert_eq!((receiver.exports(), receiver.dropped()), (2, 0));
}

#[tokio::test]
async fn refuses_what_is_not_an_otlp_protobuf_trace_export() {
    let mut receiver = Receiver::start().await.unwrap();
    let addr = receiver.addr();
    let valid = ExportTraceServiceRequest {
        resource_spans: vec![resource(Some("x"), vec![span("s", 1, vec![])])],
    }
    .encode_to_vec();

    let cases = [
        (
            "GET",
            TRACES_PATH,
            PROTOBUF,
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "POST",
            "/v1/logs",
            PROTOBUF,
            valid.clone(),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            TRACES_PATH,
            "application/json",
            valid.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "POST",
            TRACES_PATH,
            PROTOBUF,
            b"\xff\xff not protobuf".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            TRACES_PATH,
            PROTOBUF,
            vec![0; MAX_EXPORT_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (method, path, content_type, body, want) in cases {
        let (status, _, _) = send(addr, method, path, content_type, body).await;
        assert_eq!(status, want, "{method} {path} {content_type}");
    }
    assert_eq!(receiver.drain(), Vec::<ExportedSpan>::new());
    assert_eq!(receiver.exports(), 0);

    // Dropping the receiver closes its port.
    drop(receiver);
    tokio::task::yield_now().await;
    let closed = timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "{addr} still accepts after drop");
}

#[tokio::test]
async fn spans_past_the_capacity_are_dropped_and_counted() {
    let mut receiver = Receiver::start().await.unwrap();
    let spans = (0..SPAN_CAPACITY + 3)
        .map(|i| span(&i.to_string(), 1, vec![]))
        .collect();
    let export = ExportTraceServiceRequest {
        resource_spans: vec![resource(Some("flood"), spans)],
    };
    assert!(export.encoded_len() <= MAX_EXPORT_BYTES);
    // The exporter is not failed for the receiver's bound: the export is taken.
    assert_eq!(post(&receiver, &export).await, StatusCode::OK);
    assert_eq!((receiver.exports(), receiver.dropped()), (1, 3));
    let kept = receiver.drain_spans();
    assert_eq!(kept.len(), SPAN_CAPACITY);
    // The first ones are kept, the last ones dropped.
    assert_eq!(kept.last().unwrap().name, (SPAN_CAPACITY - 1).to_string());
    // Drained, there is room again.
    let again = ExportTraceServiceRequest {
        resource_spans: vec![resource(Some("flood"), vec![span("late", 2, vec![])])],
    };
    assert_eq!(post(&receiver, &again).await, StatusCode::OK);
    assert_eq!(receiver.drain_spans()[0].name, "late");
    assert_eq!(receiver.dropped(), 3);
}
