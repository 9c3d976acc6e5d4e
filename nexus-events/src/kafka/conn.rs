//! One TCP connection to one broker: length-prefixed frames, correlation ids,
//! negotiated API versions, and a timeout on every wait.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::KafkaError;

/// Socket-level options shared by every connection of a client.
#[derive(Debug, Clone)]
pub(crate) struct ConnOptions {
    pub(crate) client_id: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    /// Largest response frame accepted (bounds the read buffer).
    pub(crate) max_frame_bytes: usize,
}

pub(crate) struct Connection {
    addr: String,
    stream: TcpStream,
    opts: ConnOptions,
    client_id: StrBytes,
    next_correlation: i32,
    /// Broker's supported range per API key.
    versions: HashMap<i16, (i16, i16)>,
    wbuf: BytesMut,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connects and negotiates API versions.
    pub(crate) async fn connect(addr: &str, opts: &ConnOptions) -> Result<Self, KafkaError> {
        let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| KafkaError::Timeout {
                addr: addr.to_owned(),
                what: "TCP connect",
                after: opts.connect_timeout,
            })?
            .map_err(|source| KafkaError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Self {
            addr: addr.to_owned(),
            stream,
            client_id: StrBytes::from_string(opts.client_id.clone()),
            opts: opts.clone(),
            next_correlation: 0,
            versions: HashMap::new(),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        conn.negotiate().await?;
        Ok(conn)
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    async fn negotiate(&mut self) -> Result<(), KafkaError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("nexus-events"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp: ApiVersionsResponse = self.call(&req, 3).await?;
        if resp.error_code == 35 {
            // UNSUPPORTED_VERSION: the broker is older; v0 is always understood.
            resp = self.call(&req, 0).await?;
        }
        super::error::check(resp.error_code, || format!("ApiVersions to {}", self.addr))?;
        self.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The highest version of `R` both sides support, not above `cap`.
    pub(crate) fn version<R: Api>(&self, cap: i16) -> Result<i16, KafkaError> {
        let unsupported = || KafkaError::UnsupportedApi {
            addr: self.addr.clone(),
            api_key: R::KEY,
        };
        let &(bmin, bmax) = self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let lo = bmin.max(R::VERSIONS.min);
        let hi = bmax.min(R::VERSIONS.max).min(cap);
        if lo > hi {
            return Err(unsupported());
        }
        Ok(hi)
    }

    /// Sends `req` at the best version (capped) and waits for its response.
    pub(crate) async fn request<R: Api>(
        &mut self,
        req: &R,
        cap: i16,
    ) -> Result<R::Response, KafkaError> {
        let version = self.version::<R>(cap)?;
        self.call(req, version).await
    }

    /// Sends `req` without waiting for a response (only `acks = 0` produce).
    pub(crate) async fn send_only<R: Api>(&mut self, req: &R, cap: i16) -> Result<(), KafkaError> {
        let version = self.version::<R>(cap)?;
        self.write_request(req, version).await.map(|_| ())
    }

    /// Like [`Connection::request`] but with a longer bound on the response
    /// (JoinGroup waits for the whole rebalance).
    pub(crate) async fn request_within<R: Api>(
        &mut self,
        req: &R,
        cap: i16,
        timeout: Duration,
    ) -> Result<R::Response, KafkaError> {
        let version = self.version::<R>(cap)?;
        let timeout = timeout.max(self.opts.request_timeout);
        self.call_within(req, version, timeout).await
    }

    async fn call<R: Api>(&mut self, req: &R, version: i16) -> Result<R::Response, KafkaError> {
        self.call_within(req, version, self.opts.request_timeout)
            .await
    }

    async fn call_within<R: Api>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, KafkaError> {
        let correlation = self.write_request(req, version).await?;
        let mut frame = self.read_frame(timeout).await?;
        let key = self.api_key::<R>()?;
        let header_version = key.response_header_version(version);
        let header =
            ResponseHeader::decode(&mut frame, header_version).map_err(|e| self.protocol(e))?;
        if header.correlation_id != correlation {
            return Err(KafkaError::Protocol {
                addr: self.addr.clone(),
                message: format!(
                    "correlation id {} does not match request {correlation}",
                    header.correlation_id
                ),
            });
        }
        R::Response::decode(&mut frame, version).map_err(|e| self.protocol(e))
    }

    fn api_key<R: Api>(&self) -> Result<ApiKey, KafkaError> {
        ApiKey::try_from(R::KEY).map_err(|()| KafkaError::UnsupportedApi {
            addr: self.addr.clone(),
            api_key: R::KEY,
        })
    }

    async fn write_request<R: Api>(&mut self, req: &R, version: i16) -> Result<i32, KafkaError> {
        let key = self.api_key::<R>()?;
        let correlation = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation)
            .with_client_id(Some(self.client_id.clone()));
        self.wbuf.clear();
        self.wbuf.put_i32(0); // length, patched below
        header
            .encode(&mut self.wbuf, key.request_header_version(version))
            .map_err(|e| self.protocol(e))?;
        req.encode(&mut self.wbuf, version)
            .map_err(|e| self.protocol(e))?;
        let len = i32::try_from(self.wbuf.len() - 4).map_err(|_| KafkaError::Protocol {
            addr: self.addr.clone(),
            message: "request larger than 2 GiB".into(),
        })?;
        self.wbuf[..4].copy_from_slice(&len.to_be_bytes());
        let (addr, after) = (&self.addr, self.opts.request_timeout);
        within(
            addr,
            after,
            "request write",
            self.stream.write_all(&self.wbuf),
        )
        .await?;
        if self.wbuf.capacity() > 4 * 1024 * 1024 {
            self.wbuf = BytesMut::with_capacity(64 * 1024); // do not keep a huge buffer forever
        }
        Ok(correlation)
    }

    async fn read_frame(&mut self, after: Duration) -> Result<Bytes, KafkaError> {
        let mut len = [0u8; 4];
        let addr = &self.addr;
        within(addr, after, "response", self.stream.read_exact(&mut len)).await?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len).map_err(|_| KafkaError::Protocol {
            addr: self.addr.clone(),
            message: format!("negative frame length {len}"),
        })?;
        if len > self.opts.max_frame_bytes {
            return Err(KafkaError::FrameTooLarge {
                addr: self.addr.clone(),
                len,
                max: self.opts.max_frame_bytes,
            });
        }
        let mut body = BytesMut::zeroed(len);
        let (addr, after) = (&self.addr, self.opts.request_timeout);
        within(
            addr,
            after,
            "response body",
            self.stream.read_exact(&mut body),
        )
        .await?;
        Ok(body.freeze())
    }

    fn protocol(&self, e: impl std::fmt::Display) -> KafkaError {
        KafkaError::Protocol {
            addr: self.addr.clone(),
            message: e.to_string(),
        }
    }
}

async fn within<T>(
    addr: &str,
    after: Duration,
    what: &'static str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T, KafkaError> {
    match tokio::time::timeout(after, fut).await {
        Err(_) => Err(KafkaError::Timeout {
            addr: addr.to_owned(),
            what,
            after,
        }),
        Ok(Err(source)) => Err(KafkaError::Io {
            addr: addr.to_owned(),
            source,
        }),
        Ok(Ok(v)) => Ok(v),
    }
}

/// A request this client sends: its API key and response type.
///
/// (`kafka_protocol::protocol::Request` also requires decoding requests,
/// which the crate only provides with its `broker` feature.)
pub(crate) trait Api: Encodable + Message {
    const KEY: i16;
    type Response: Decodable;
}

macro_rules! api {
    ($($req:ident => $resp:ident, $key:ident;)*) => {
        $(impl Api for kafka_protocol::messages::$req {
            const KEY: i16 = ApiKey::$key as i16;
            type Response = kafka_protocol::messages::$resp;
        })*
    };
}

api! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    MetadataRequest => MetadataResponse, Metadata;
    CreateTopicsRequest => CreateTopicsResponse, CreateTopics;
    ProduceRequest => ProduceResponse, Produce;
    FetchRequest => FetchResponse, Fetch;
    ListOffsetsRequest => ListOffsetsResponse, ListOffsets;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    JoinGroupRequest => JoinGroupResponse, JoinGroup;
    SyncGroupRequest => SyncGroupResponse, SyncGroup;
    HeartbeatRequest => HeartbeatResponse, Heartbeat;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit;
}
