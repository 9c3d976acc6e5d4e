//! The router: dispatches a classified [`Route`] to its handler. It runs last,
//! after every check, so rejected requests never reach it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use hyper::body::Incoming;
use tower_service::Service;

use crate::admin::Panel;
use crate::gateway::Shared;
use crate::layers::RequestContext;
use crate::metrics::ExpositionFormat;
use crate::path::Route;
use crate::response::{GatewayResponse, error, json};

/// Dispatches requests to the admin handlers, the token endpoint and the proxy.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl Router {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn method_not_allowed(allow: &'static str) -> GatewayResponse {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    );
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// Hands the request's extensions (the context with the principal) back on the
/// response: moved, not copied, so outer layers read them for free. The
/// response's own values win.
fn return_extensions(res: &mut GatewayResponse, request_ext: http::Extensions) {
    let response_ext = std::mem::take(res.extensions_mut());
    let ext = res.extensions_mut();
    *ext = request_ext;
    ext.extend(response_ext);
}

async fn route(shared: &Shared, req: Request<Incoming>, ext: &http::Extensions) -> GatewayResponse {
    let context = ext.get::<RequestContext>();
    let route = context.map_or(Route::NotFound, |c| c.route);
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match route {
        Route::Api => {
            let rid = context.map_or_else(crate::util::new_request_id, |c| c.request_id.clone());
            let peer = crate::layers::peer_addr(ext).map(|a| a.ip());
            shared.proxy.forward(req, rid, peer).await
        }
        Route::Token if req.method() == Method::POST => {
            crate::auth::issue_token(
                req.into_body(),
                &shared.settings.auth.clients,
                &shared.keys,
                shared.settings.server.header_read_timeout,
            )
            .await
        }
        Route::Token => method_not_allowed("POST"),
        _ if !get => method_not_allowed("GET, HEAD"),
        Route::Health => json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok", "gateway": "nexus", "version": env!("CARGO_PKG_VERSION") }),
        ),
        Route::Metrics => {
            let format = ExpositionFormat::negotiate(req.headers().get(header::ACCEPT));
            let mut res = crate::response::raw_json(
                StatusCode::OK,
                Bytes::from(shared.metrics.encode_as(format)),
            );
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            res
        }
        Route::Telemetry => {
            /// Serialised straight from the entries (no `serde_json::Value`
            /// tree of the whole ring per request).
            #[derive(serde::Serialize)]
            struct Out<'a> {
                count: usize,
                requests: &'a [crate::telemetry::TelemetryEntry],
            }
            let entries = shared.telemetry.snapshot();
            let out = Out {
                count: entries.len(),
                requests: &entries,
            };
            match serde_json::to_vec(&out) {
                Ok(body) => crate::response::raw_json(StatusCode::OK, body.into()),
                Err(_) => crate::response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "telemetry not serialisable",
                ),
            }
        }
        Route::LbStats => json(StatusCode::OK, &shared.proxy.lb_stats()),
        Route::Dashboard => shared.dashboard.page.response(),
        Route::AdminOverview => json(StatusCode::OK, &crate::admin::overview(shared)),
        Route::AdminCache => shared.dashboard.panel_response(Panel::Cache).await,
        Route::AdminConsumer => shared.dashboard.panel_response(Panel::Consumer).await,
        Route::AdminDashboard => {
            let (cache, consumer) = tokio::join!(
                shared.dashboard.panel(Panel::Cache),
                shared.dashboard.panel(Panel::Consumer)
            );
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "gateway": crate::admin::overview(shared),
                    "cache": cache.1,
                    "consumer": consumer.1,
                }),
            )
        }
        Route::CbStats => json(StatusCode::OK, &shared.proxy.cb_stats()),
        Route::NotFound => error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

impl Service<Request<Incoming>> for Router {
    type Response = GatewayResponse;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<GatewayResponse, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let shared = self.shared.clone();
        let mut req = req;
        let request_ext = std::mem::take(req.extensions_mut());
        Box::pin(async move {
            let mut res = route(&shared, req, &request_ext).await;
            return_extensions(&mut res, request_ext);
            Ok(res)
        })
    }
}
