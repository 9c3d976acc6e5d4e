//! Opening an authenticated upstream connection.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::UpstreamAddr;
use crate::error::{UpstreamError, single_line};
use crate::resp::{Limits, Scanner, encode};

/// Connects to Redis and runs the handshake (`AUTH`, then `SELECT` when the URL
/// names a database), all within `timeout`. The returned stream is in RESP2 with
/// no pending replies.
pub(crate) async fn connect(
    addr: &UpstreamAddr,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    match tokio::time::timeout(timeout, connect_inner(addr)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Unavailable(format!(
            "connecting to {} timed out after {timeout:?}",
            addr.host_port
        ))),
    }
}

async fn connect_inner(addr: &UpstreamAddr) -> Result<TcpStream, UpstreamError> {
    let unavailable = |e: std::io::Error| {
        UpstreamError::Unavailable(format!(
            "{}: {}",
            addr.host_port,
            single_line(&e.to_string())
        ))
    };
    let mut stream = TcpStream::connect(&addr.host_port)
        .await
        .map_err(unavailable)?;
    stream.set_nodelay(true).map_err(unavailable)?;

    let mut hello = BytesMut::new();
    let mut expected = 0;
    if let Some(c) = &addr.credentials {
        match &c.username {
            Some(u) => encode::command(&mut hello, &[b"AUTH", u.as_bytes(), c.password.as_bytes()]),
            None => encode::command(&mut hello, &[b"AUTH", c.password.as_bytes()]),
        }
        expected += 1;
    }
    if addr.db != 0 {
        encode::command(&mut hello, &[b"SELECT", addr.db.to_string().as_bytes()]);
        expected += 1;
    }
    if expected == 0 {
        return Ok(stream);
    }
    stream.write_all(&hello).await.map_err(unavailable)?;

    let mut scanner = Scanner::new(Limits::default()).inline(false);
    let mut buf = BytesMut::with_capacity(256);
    while expected > 0 {
        match scanner.scan(&buf) {
            Ok(Some(n)) => {
                let reply = buf.split_to(n);
                if reply.first() == Some(&b'-') {
                    let text = String::from_utf8_lossy(&reply[1..]).trim_end().to_owned();
                    return Err(UpstreamError::Unavailable(format!(
                        "handshake refused: {text}"
                    )));
                }
                expected -= 1;
            }
            Ok(None) => {
                if buf.len() > 64 * 1024 {
                    return Err(UpstreamError::Protocol("oversized handshake reply".into()));
                }
                if stream.read_buf(&mut buf).await.map_err(unavailable)? == 0 {
                    return Err(UpstreamError::Unavailable(
                        "connection closed during handshake".into(),
                    ));
                }
            }
            Err(e) => return Err(UpstreamError::Protocol(e.to_string())),
        }
    }
    Ok(stream)
}
