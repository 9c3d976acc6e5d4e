//! The accept loop of the kit's in-process HTTP servers ([`HttpUpstream`](crate::HttpUpstream)
//! and, with feature `otlp`, the OTLP receiver).

use std::error::Error as StdError;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Serves HTTP/1.1 on `listener`, one service from `make` per connection,
/// until this future is dropped (its task aborted): that drops the
/// [`JoinSet`], which aborts every connection. At most `max` connections are
/// served at once; further ones wait in the listen backlog.
pub(crate) async fn http1<M, S>(listener: TcpListener, max: usize, make: M)
where
    M: Fn() -> S,
    S: Service<Request<Incoming>, Response = Response<Full<Bytes>>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        while connections.len() >= max {
            let _ = connections.join_next().await;
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = make();
                    connections.spawn(async move {
                        // Errors here are the client's or a test's deliberate aborts.
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
