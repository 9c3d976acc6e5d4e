//! The gateway's public tower layers as an embedder composes them around its
//! own services (not the gateway's private router, which hands the request's
//! extensions back): the entry layer records the authenticated client, handlers
//! find the `Principal`, the request id and the peer, and requests dropped
//! before their response are recorded as 499.
#![allow(clippy::unwrap_used, missing_docs)]
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, StatusCode};
use nexus_gateway::GatewayConfig;
use nexus_gateway::auth::{JwtAuthLayer, JwtKeys, Principal};
use nexus_gateway::events::NullSink;
use nexus_gateway::layers::{CLIENT_CLOSED_REQUEST, EntryLayer, RequestContext};
use nexus_gateway::metrics::Metrics;
use nexus_gateway::response::{GatewayResponse, error};
use nexus_gateway::telemetry::Telemetry;
use tower::{ServiceExt as _, service_fn};
use tower_layer::Layer as _;

fn keys() -> Arc<JwtKeys> {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.json");
    std::fs::write(
        &services,
        r#"{"services":[{"url":"http://127.0.0.1:3001","weight":1}]}"#,
    )
    .unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:0\nproxy:\n  services_file: {}\nauth:\n  signing_secret: {}\n  clients: []\n",
        services.display(),
        "0123456789abcdef0123456789abcdef",
    );
    let settings = GatewayConfig::from_yaml(&yaml)
        .unwrap()
        .validate(|_| None)
        .unwrap();
    Arc::new(JwtKeys::from_settings(&settings.auth).unwrap())
}

fn ok() -> GatewayResponse {
    error(StatusCode::OK, "ok", "ok")
}

/// An embedder composing the public layers (entry -> JWT -> own handler): the
/// completed request must be logged with the token's client, not "anonymous".
#[tokio::test]
async fn embedded_entry_and_jwt_layers_record_the_authenticated_client() {
    let keys = keys();
    let (token, _) = keys.issue("client-a").unwrap();
    let telemetry = Arc::new(Telemetry::new(16));
    let inner = service_fn(|_req: Request<()>| async move { Ok::<_, Infallible>(ok()) });
    let svc = EntryLayer::new(
        Arc::new(Metrics::new()),
        telemetry.clone(),
        Arc::new(NullSink),
    )
    .layer(JwtAuthLayer::new(keys).layer(inner));
    let mut req = Request::get("/api/x")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    req.extensions_mut()
        .insert::<SocketAddr>("10.0.0.1:1".parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let t = telemetry.snapshot();
    assert_eq!(&*t[0].client, "client-a");
}

/// JwtAuth on its own: outer layers find the Principal on the response.
#[tokio::test]
async fn standalone_jwt_layer_puts_the_principal_on_the_response() {
    let keys = keys();
    let (token, _) = keys.issue("client-a").unwrap();
    let inner = service_fn(|_req: Request<()>| async move { Ok::<_, Infallible>(ok()) });
    let svc = JwtAuthLayer::new(keys).layer(inner);
    let req = Request::get("/api/x")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(
        res.extensions().get::<Principal>().map(|p| &*p.subject),
        Some("client-a")
    );
}

/// Behind the entry layer a handler finds the request id (the client's valid
/// one or the generated one: the id the client gets back) in
/// `RequestContext::request_id`; the request's own headers are left as the
/// client sent them (documented in docs/gateway.md).
#[tokio::test]
async fn inner_service_finds_the_request_id_in_the_context() {
    #[derive(Default)]
    struct Seen {
        context: Option<String>,
        header: Option<String>,
    }
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let s = seen.clone();
    let inner = service_fn(move |req: Request<()>| {
        let s = s.clone();
        async move {
            let mut s = s.lock().unwrap();
            s.context = req
                .extensions()
                .get::<RequestContext>()
                .map(|c| c.request_id.to_str().unwrap().to_owned());
            s.header = req
                .headers()
                .get("x-request-id")
                .map(|v| v.to_str().unwrap().to_owned());
            Ok::<_, Infallible>(ok())
        }
    });
    let svc = EntryLayer::new(
        Arc::new(Metrics::new()),
        Arc::new(Telemetry::new(16)),
        Arc::new(NullSink),
    )
    .layer(inner);

    // Generated id: in the context, returned to the client, not in the headers.
    let res = svc
        .clone()
        .oneshot(Request::get("/health").body(()).unwrap())
        .await
        .unwrap();
    let returned = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert!(returned.starts_with("nexus-"), "{returned}");
    assert_eq!(seen.lock().unwrap().context.as_deref(), Some(returned));
    assert_eq!(seen.lock().unwrap().header, None);

    // A valid client id is kept: the same in the context and on the response.
    let req = Request::get("/health")
        .header("x-request-id", "client-id-1")
        .body(())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.headers().get("x-request-id").unwrap(), "client-id-1");
    assert_eq!(seen.lock().unwrap().context.as_deref(), Some("client-id-1"));

    // An invalid client id is replaced: the context holds the replacement the
    // client gets back, while the header still shows the client's raw value.
    let req = Request::get("/health")
        .header("x-request-id", "a b")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let returned = res.headers().get("x-request-id").unwrap().to_str().unwrap();
    assert_ne!(returned, "a b");
    assert_eq!(seen.lock().unwrap().context.as_deref(), Some(returned));
    assert_eq!(seen.lock().unwrap().header.as_deref(), Some("a b"));
}

/// An embedder whose peer-address adapter (e.g. axum `ConnectInfo` ->
/// `SocketAddr`) runs inside the entry layer: a context without a peer does not
/// hide the `SocketAddr` extension from the blocklist.
#[tokio::test]
async fn blocklist_sees_a_socket_addr_inserted_after_the_entry_layer() {
    use nexus_gateway::blocklist::StaticBlocklist;
    use nexus_gateway::layers::BlocklistLayer;
    let list = Arc::new(StaticBlocklist::default());
    list.block("10.0.0.1".parse().unwrap());
    let inner = service_fn(|_req: Request<()>| async move { Ok::<_, Infallible>(ok()) });
    let blocked = BlocklistLayer::new(list).layer(inner);
    let with_peer = tower::util::MapRequestLayer::new(|mut req: Request<()>| {
        req.extensions_mut()
            .insert::<SocketAddr>("10.0.0.1:1".parse().unwrap());
        req
    })
    .layer(blocked);
    let svc = EntryLayer::new(
        Arc::new(Metrics::new()),
        Arc::new(Telemetry::new(16)),
        Arc::new(NullSink),
    )
    .layer(with_peer);
    let res = svc
        .oneshot(Request::get("/health").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

/// The documented contract ("Principal into extensions", `Principal` doc):
/// a handler behind entry + JWT reads `Extensions::get::<Principal>()` (what
/// axum's `Extension<Principal>` extractor does).
#[tokio::test]
async fn handler_behind_entry_and_jwt_finds_the_principal_extension() {
    let keys = keys();
    let (token, _) = keys.issue("client-a").unwrap();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let s = seen.clone();
    let inner = service_fn(move |req: Request<()>| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() = req
                .extensions()
                .get::<Principal>()
                .map(|p| p.subject.to_string());
            Ok::<_, Infallible>(ok())
        }
    });
    let svc = EntryLayer::new(
        Arc::new(Metrics::new()),
        Arc::new(Telemetry::new(16)),
        Arc::new(NullSink),
    )
    .layer(JwtAuthLayer::new(keys).layer(inner));
    let req = Request::get("/api/x")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.lock().unwrap().as_deref(), Some("client-a"));
}

/// Every entry-layer response (401 here) returns the client's first valid
/// request id exactly once.
#[tokio::test]
async fn unauthorized_returns_the_client_request_id() {
    let inner = service_fn(|_req: Request<()>| async move { Ok::<_, Infallible>(ok()) });
    let svc = EntryLayer::new(
        Arc::new(Metrics::new()),
        Arc::new(Telemetry::new(16)),
        Arc::new(NullSink),
    )
    .layer(JwtAuthLayer::new(keys()).layer(inner));
    let req = Request::get("/admin/overview")
        .header("x-request-id", "abc-123")
        .header("x-request-id", "second")
        .body(())
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let ids: Vec<_> = res.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids, ["abc-123"]);
}

/// A request whose response future is dropped before the inner service
/// answers (the client went away) is recorded once, as 499; a request that
/// completes is recorded once, with its status (the drop adds nothing).
#[tokio::test]
async fn a_request_dropped_before_its_response_is_recorded_as_499() {
    let telemetry = Arc::new(Telemetry::new(16));
    let metrics = Arc::new(Metrics::new());
    let (release, released) = tokio::sync::watch::channel(false);
    let inner = service_fn(move |req: Request<()>| {
        let mut released = released.clone();
        async move {
            if req.uri().path() == "/api/slow" {
                let _ = released.wait_for(|r| *r).await;
            }
            Ok::<_, Infallible>(ok())
        }
    });
    let svc = EntryLayer::new(metrics.clone(), telemetry.clone(), Arc::new(NullSink)).layer(inner);

    let res = svc
        .clone()
        .oneshot(Request::get("/health").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    drop(res);
    assert_eq!(telemetry.snapshot().len(), 1, "finished: recorded once");

    let mut req = Request::get("/api/slow").body(()).unwrap();
    req.extensions_mut()
        .insert::<SocketAddr>("10.0.0.7:1".parse().unwrap());
    let pending = svc.oneshot(req);
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), pending).await;
    assert!(gave_up.is_err(), "the inner service is still waiting");
    let _ = release.send(true);

    let t = telemetry.snapshot();
    assert_eq!(t.len(), 2, "{t:?}");
    assert_eq!(t[1].status, CLIENT_CLOSED_REQUEST);
    assert_eq!(t[1].path, "/api/slow");
    assert_eq!(t[1].ip, Some("10.0.0.7".parse().unwrap()));
    let text = metrics.encode();
    assert!(
        text.lines()
            .any(|l| l.starts_with("nexus_http_requests_total")
                && l.contains("status_code=\"499\"")
                && l.contains("route=\"/api/*\"")),
        "{text}"
    );
}
