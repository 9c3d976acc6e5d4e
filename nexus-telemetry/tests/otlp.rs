//! Spans exported over OTLP/HTTP to a real receiver keep the incoming trace,
//! carry the right kinds, names, attributes and parent/child links, and the
//! traceparent sent upstream names the client span.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nexus_telemetry::layer::{ClientTraceLayer, ResendCount, RouteTemplate, ServerTraceLayer};
use nexus_telemetry::{BatchSettings, LogFormat, TelemetryConfig, build_dispatch};
use nexus_testkit::HttpUpstream;
use nexus_testkit::otlp::{Receiver, attr, hex};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::Buffer;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

type Upstream = nexus_telemetry::layer::ClientTrace<Client<HttpConnector, Full<Bytes>>>;

/// The app under test: routes `/api/{id}`, calls the upstream twice (a first
/// attempt and a "retry") through the client layer.
async fn app(req: Request<Incoming>, upstream: Upstream, up: SocketAddr) -> Response<Full<Bytes>> {
    tracing::info!(path = req.uri().path(), "handling");
    for attempt in 0..2 {
        let mut out = Request::get(format!("http://{up}/hello"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        out.extensions_mut().insert(ResendCount(attempt));
        let res = upstream.clone().oneshot(out).await.unwrap();
        let _ = res.into_body().collect().await;
    }
    Response::new(Full::new(Bytes::from_static(b"ok")))
}

/// Serves `app` behind `ServerTraceLayer`, inserting the peer address as the gateway does.
async fn serve_app(up: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let upstream = ClientTraceLayer::new().layer(client);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let svc = ServerTraceLayer::new()
                .route_fn(|_, uri| {
                    uri.path()
                        .starts_with("/api/")
                        .then(|| RouteTemplate::from_static("/api/{id}"))
                })
                .layer(tower::service_fn(move |req: Request<Incoming>| {
                    let upstream = upstream.clone();
                    async move { Ok::<_, std::convert::Infallible>(app(req, upstream, up).await) }
                }));
            let svc = tower::ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(peer);
                    req
                })
                .service(svc);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(stream),
                        hyper_util::service::TowerToHyperService::new(svc),
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "current_thread")]
async fn server_and_client_spans_reach_a_real_receiver() {
    let mut receiver = Receiver::start().await.unwrap();
    let batch = BatchSettings {
        scheduled_delay: Duration::from_millis(50),
        export_timeout: Duration::from_secs(2),
        ..BatchSettings::default()
    };
    let cfg = TelemetryConfig::new("nexus-test")
        .log_format(LogFormat::Json)
        .otlp_endpoint(Some(receiver.endpoint()))
        .batch(batch);
    let logs = Buffer::default();
    let (dispatch, guard) = build_dispatch(cfg, logs.clone()).unwrap();
    assert!(guard.is_exporting());
    // Current-thread runtime: every task runs on this thread, under this dispatch.
    let _default = tracing::dispatcher::set_default(&dispatch);

    let up = HttpUpstream::start().await.unwrap();
    let app_addr = serve_app(up.addr()).await;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = Request::get(format!("http://{app_addr}/api/7"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 200);

    // Shutdown flushes the batch; the receiver then holds every span.
    assert!(
        tokio::time::timeout(Duration::from_secs(10), guard.shutdown())
            .await
            .unwrap()
    );
    let spans = receiver.drain();
    assert_eq!(
        spans.len(),
        3,
        "one server span and two client spans: {spans:#?}"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.service.as_deref() == Some("nexus-test")),
        "{spans:#?}"
    );

    let server = &spans
        .iter()
        .find(|s| s.span.kind == SpanKind::Server as i32)
        .unwrap()
        .span;
    assert_eq!(hex(&server.trace_id), TRACE, "incoming trace id kept");
    assert_eq!(
        hex(&server.parent_span_id),
        PARENT,
        "incoming span is the parent"
    );
    assert_eq!(server.name, "GET /api/{id}");
    assert_eq!(attr(server, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(server, "url.path").as_deref(), Some("/api/7"));
    assert_eq!(attr(server, "http.route").as_deref(), Some("/api/{id}"));
    assert_eq!(
        attr(server, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(server, "client.address").as_deref(), Some("127.0.0.1"));

    let mut clients: Vec<_> = spans
        .iter()
        .map(|s| &s.span)
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    clients.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(clients.len(), 2, "each attempt is its own span");
    assert_ne!(clients[0].span_id, clients[1].span_id);
    for c in &clients {
        assert_eq!(c.name, "upstream.proxy");
        assert_eq!(hex(&c.trace_id), TRACE);
        assert_eq!(
            c.parent_span_id, server.span_id,
            "client is a child of the server span"
        );
        assert_eq!(attr(c, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(c, "server.port"), Some(up.addr().port().to_string()));
        assert_eq!(attr(c, "http.response.status_code").as_deref(), Some("200"));
    }
    assert_eq!(attr(clients[0], "http.request.resend_count"), None);
    assert_eq!(
        attr(clients[1], "http.request.resend_count").as_deref(),
        Some("1")
    );

    // What the upstream received names each client span, in order.
    let seen: Vec<String> = up
        .recorded_requests()
        .iter()
        .map(|r| r.headers["traceparent"].to_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = clients
        .iter()
        .map(|c| format!("00-{TRACE}-{}-01", hex(&c.span_id)))
        .collect();
    assert_eq!(seen, expected);

    // The handler's log line carries the server span's ids.
    let text = logs.text();
    let line = text.lines().find(|l| l.contains("\"handling\"")).unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["trace_id"], TRACE);
    assert_eq!(v["span_id"], hex(&server.span_id));
}

#[tokio::test(flavor = "current_thread")]
async fn sampling_zero_exports_nothing_but_still_propagates() {
    let mut receiver = Receiver::start().await.unwrap();
    let cfg = TelemetryConfig::new("nexus-test")
        .otlp_endpoint(Some(receiver.endpoint()))
        .sampling_ratio(0.0)
        .batch(BatchSettings {
            scheduled_delay: Duration::from_millis(20),
            ..BatchSettings::default()
        });
    let (dispatch, guard) = build_dispatch(cfg, Buffer::default()).unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let svc = ServerTraceLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        let mut out = Request::get("http://127.0.0.1:9/x").body(()).unwrap();
        let _span = nexus_telemetry::layer::client_span("upstream.proxy", &mut out);
        let tp = out
            .headers()
            .get("traceparent")
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, std::convert::Infallible>(Response::new(tp))
    }));
    // New trace: not sampled, but a valid traceparent (flags 00) still goes upstream.
    let tp = svc
        .oneshot(Request::new(()))
        .await
        .unwrap()
        .into_body()
        .unwrap();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");

    assert!(guard.shutdown().await);
    assert!(
        receiver.drain().is_empty(),
        "unsampled spans must not be exported"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_guard_flushes_queued_spans() {
    let mut receiver = Receiver::start().await.unwrap();
    // A long delay: nothing is exported before the guard goes away.
    let cfg = TelemetryConfig::new("nexus-test")
        .otlp_endpoint(Some(receiver.endpoint()))
        .batch(BatchSettings {
            scheduled_delay: Duration::from_secs(60),
            ..BatchSettings::default()
        });
    let (dispatch, guard) = build_dispatch(cfg, Buffer::default()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..5 {
            let _s = tracing::info_span!("unit", i).entered();
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        receiver.drain().is_empty(),
        "nothing exported before the flush"
    );
    // Drop blocks this worker (bounded) while the other worker runs the export.
    tokio::task::block_in_place(|| drop(guard));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let names: Vec<String> = receiver.drain_spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["unit"; 5]);
}

/// `otel.status_code = error` as the OpenTelemetry HTTP conventions want it:
/// a client span errs on a 4xx, 5xx or failed call; a server span only on a
/// 5xx or a failed call (a 4xx is the client's failure). Checked in what a
/// real receiver decodes.
#[tokio::test(flavor = "current_thread")]
async fn error_status_depends_on_the_side_of_the_call() {
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtlpStatus;

    let mut receiver = Receiver::start().await.unwrap();
    let cfg = TelemetryConfig::new("nexus-test")
        .otlp_endpoint(Some(receiver.endpoint()))
        .batch(BatchSettings {
            scheduled_delay: Duration::from_millis(20),
            ..BatchSettings::default()
        });
    let (dispatch, guard) = build_dispatch(cfg, Buffer::default()).unwrap();
    let _default = tracing::dispatcher::set_default(&dispatch);

    let answer = |status: u16| {
        tower::service_fn(move |_req: Request<()>| async move {
            Ok::<_, &'static str>(Response::builder().status(status).body(()).unwrap())
        })
    };
    let fail = || tower::service_fn(|_req: Request<()>| async { Err::<Response<()>, _>("down") });
    let request = |uri: &str| Request::get(uri).body(()).unwrap();
    for status in [200, 404, 503] {
        let server = ServerTraceLayer::new().layer(answer(status));
        let res = server.oneshot(request(&format!("/s{status}"))).await;
        assert_eq!(res.unwrap().status(), status);
        let client = ClientTraceLayer::new()
            .name(format!("c{status}"))
            .layer(answer(status));
        let res = client.oneshot(request("http://127.0.0.1:9/")).await;
        assert_eq!(res.unwrap().status(), status);
    }
    let server = ServerTraceLayer::new().layer(fail());
    assert!(server.oneshot(request("/s-failed")).await.is_err());
    let client = ClientTraceLayer::new().name("c-failed").layer(fail());
    assert!(
        client
            .oneshot(request("http://127.0.0.1:9/"))
            .await
            .is_err()
    );
    // A route found by the service itself (response extension) names the span.
    let routed = ServerTraceLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        let mut res = Response::new(());
        res.extensions_mut()
            .insert(RouteTemplate::from_static("/items/{id}"));
        Ok::<_, &'static str>(res)
    }));
    routed.oneshot(request("/items/7")).await.unwrap();

    assert!(guard.shutdown().await);
    let spans = receiver.drain_spans();
    let errs = |s: &opentelemetry_proto::tonic::trace::v1::Span| {
        s.status
            .as_ref()
            .is_some_and(|st| st.code == OtlpStatus::Error as i32)
    };
    let mut seen: Vec<(String, bool)> = spans
        .iter()
        .map(|s| {
            let id = attr(s, "url.path").unwrap_or_else(|| s.name.clone());
            (id, errs(s))
        })
        .collect();
    seen.sort();
    let want = [
        ("/items/7", false),
        ("/s-failed", true),
        ("/s200", false),
        ("/s404", false),
        ("/s503", true),
        ("c-failed", true),
        ("c200", false),
        ("c404", true),
        ("c503", true),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(n, e)| (n.to_string(), *e)).collect();
    assert_eq!(seen, want, "{spans:#?}");
    let routed = spans
        .iter()
        .find(|s| attr(s, "url.path").as_deref() == Some("/items/7"))
        .unwrap();
    assert_eq!(routed.name, "GET /items/{id}");
    assert_eq!(attr(routed, "http.route").as_deref(), Some("/items/{id}"));
}
