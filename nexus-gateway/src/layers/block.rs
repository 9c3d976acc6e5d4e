//! [`BlocklistLayer`]: 403 for peers on the blocklist, before any other work.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready, ready};
use http::{Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::blocklist::Blocklist;
use crate::response::{GatewayResponse, error};

/// Refuses requests whose TCP peer ([`peer_addr`](super::peer_addr): the request
/// context's, else a `SocketAddr` extension) is blocked.
#[derive(Clone)]
pub struct BlocklistLayer {
    list: Arc<dyn Blocklist>,
}

impl std::fmt::Debug for BlocklistLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlocklistLayer")
            .field("blocked", &self.list.len())
            .finish()
    }
}

impl BlocklistLayer {
    /// New layer over a blocklist view.
    pub fn new(list: Arc<dyn Blocklist>) -> Self {
        Self { list }
    }
}

impl<S> Layer<S> for BlocklistLayer {
    type Service = BlockGuard<S>;
    fn layer(&self, inner: S) -> BlockGuard<S> {
        BlockGuard {
            inner,
            list: self.list.clone(),
        }
    }
}

/// Service produced by [`BlocklistLayer`].
#[derive(Clone)]
pub struct BlockGuard<S> {
    inner: S,
    list: Arc<dyn Blocklist>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for BlockGuard<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockGuard")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for BlockGuard<S>
where
    S: Service<Request<B>, Response = GatewayResponse>,
{
    type Response = GatewayResponse;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<GatewayResponse, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let blocked = super::peer_addr(req.extensions())
            .is_some_and(|a| self.list.is_blocked(a.ip().to_canonical()));
        if blocked {
            let mut res = error(
                StatusCode::FORBIDDEN,
                "ip_blocked",
                "this address is blocked",
            );
            res.extensions_mut().insert(IpBlocked);
            return Either::Right(ready(Ok(res)));
        }
        Either::Left(self.inner.call(req))
    }
}

/// Response extension marking a 403 produced by the blocklist (the entry
/// layer counts these apart from an upstream's own 403s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlocked;
