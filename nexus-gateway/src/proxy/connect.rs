//! The upstream connector: hyper-util's [`HttpConnector`] without per-response
//! connection info.
//!
//! hyper-util's TCP connection reports its addresses as `HttpInfo`, which the
//! pooled client then copies into the extensions of *every* response (a boxed
//! map, its table and a boxed value: three allocations per proxied request).
//! Nothing in the gateway reads it, so [`PlainConnector`] hands the client
//! connections that report no extra information.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// [`HttpConnector`] whose connections carry no `HttpInfo`.
#[derive(Debug, Clone)]
pub struct PlainConnector(pub(super) HttpConnector);

/// A TCP connection to an upstream (see [`PlainConnector`]).
#[derive(Debug)]
pub struct PlainConn(TokioIo<TcpStream>);

impl Connection for PlainConn {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for PlainConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for PlainConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

impl Service<Uri> for PlainConnector {
    type Response = PlainConn;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<PlainConn, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        // One box per new connection (not per request).
        Box::pin(async move { connecting.await.map(PlainConn) })
    }
}
