//! Against a real `redis-server` (started by nexus-testkit on a free loopback
//! port): commands encoded here are accepted by Redis, and every reply type
//! Redis produces, RESP2 and RESP3 (via `HELLO 3` and `DEBUG PROTOCOL`),
//! decodes to the expected frame (through `Frame` and view decoding) and
//! re-encodes to the exact bytes received.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::BytesMut;
use nexus_resp::{Decoder, Frame, Limits, Scanner, encode};
use nexus_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    /// Raw bytes of every frame read, to compare with re-encoding.
    raw: Vec<u8>,
}

impl Conn {
    async fn open(redis: &RedisServer) -> Conn {
        Conn {
            stream: TcpStream::connect(redis.addr()).await.unwrap(),
            buf: BytesMut::with_capacity(4096),
            decoder: Decoder::new(Limits::default()).inline(false),
            raw: Vec::new(),
        }
    }

    async fn send(&mut self, args: &[&[u8]]) {
        let mut out = Vec::new();
        encode::command(&mut out, args);
        self.stream.write_all(&out).await.unwrap();
    }

    async fn read(&mut self) -> Frame {
        timeout(Duration::from_secs(10), async {
            loop {
                let before = self.buf.clone();
                if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                    let used = before.len() - self.buf.len();
                    self.raw = before[..used].to_vec();
                    // The view decoder reads the same reply the same way.
                    let mut raw = bytes::Bytes::copy_from_slice(&self.raw);
                    let mut views = Decoder::new(Limits::default()).inline(false);
                    let view = views.decode_view_bytes(&mut raw).unwrap().unwrap();
                    assert_eq!(view.to_frame(), frame, "view of {frame:?}");
                    assert_eq!(&view.bytes()[..], &self.raw[..]);
                    return frame;
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "redis closed the connection");
            }
        })
        .await
        .expect("reply within 10 s")
    }

    /// Sends a command, reads one reply, and checks it re-encodes exactly.
    async fn call(&mut self, args: &[&[u8]]) -> Frame {
        self.send(args).await;
        let frame = self.read().await;
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(again, self.raw, "re-encoding {frame:?}");
        frame
    }
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

#[tokio::test(flavor = "current_thread")]
async fn resp2_replies_and_binary_values() {
    let redis = RedisServer::start().await.unwrap();
    let mut c = Conn::open(&redis).await;

    assert_eq!(c.call(&[b"PING"]).await, Frame::Simple("PONG".into()));
    // Every byte value, 1 MiB: binary-safe both ways.
    let value: Vec<u8> = (0..1 << 20).map(|i| (i % 256) as u8).collect();
    assert_eq!(
        c.call(&[b"SET", b"bin", &value]).await,
        Frame::Simple("OK".into())
    );
    assert_eq!(c.call(&[b"GET", b"bin"]).await, Frame::Bulk(value.into()));
    assert_eq!(c.call(&[b"GET", b"missing"]).await, Frame::NullBulk);
    assert_eq!(c.call(&[b"INCRBY", b"n", b"-5"]).await, Frame::Integer(-5));
    assert!(
        matches!(c.call(&[b"NOSUCHCOMMAND"]).await, Frame::Error(e) if e.starts_with(b"ERR unknown command"))
    );
    c.call(&[b"RPUSH", b"list", b"a", b"", b"c"]).await;
    assert_eq!(
        c.call(&[b"LRANGE", b"list", b"0", b"-1"]).await,
        Frame::Array(vec![bulk("a"), bulk(""), bulk("c")])
    );
    assert_eq!(
        c.call(&[b"BLPOP", b"nothing", b"0.01"]).await,
        Frame::NullArray
    );

    // A pipeline of 200 commands, replies read in order.
    let mut out = Vec::new();
    for i in 0..200 {
        let key = format!("k{i}");
        encode::command(&mut out, &[b"SET", key.as_bytes(), key.as_bytes()]);
        encode::command(&mut out, &[b"GET", key.as_bytes()]);
    }
    c.stream.write_all(&out).await.unwrap();
    for i in 0..200 {
        assert_eq!(c.read().await, Frame::Simple("OK".into()));
        assert_eq!(c.read().await, bulk(&format!("k{i}")));
    }

    // Redis accepts an inline command, and the scanner frames what it sent back.
    c.stream
        .write_all(b"SET inline \"a b\"\r\nGET inline\r\n")
        .await
        .unwrap();
    assert_eq!(c.read().await, Frame::Simple("OK".into()));
    assert_eq!(c.read().await, bulk("a b"));
    let mut scanner = Scanner::new(Limits::default());
    assert_eq!(scanner.scan(b"GET inline\r\n").unwrap(), Some(12));
}

#[tokio::test(flavor = "current_thread")]
async fn resp3_replies() {
    let redis = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("yes")
        .start()
        .await
        .unwrap();
    let mut c = Conn::open(&redis).await;
    let hello = c.call(&[b"HELLO", b"3"]).await;
    let Frame::Map(fields) = hello else {
        panic!("HELLO 3 is a map, got {hello:?}")
    };
    assert!(fields.contains(&(bulk("proto"), Frame::Integer(3))));

    let debug = |ty: &'static str| [&b"DEBUG"[..], b"PROTOCOL", ty.as_bytes()];
    assert!(matches!(c.call(&debug("string")).await, Frame::Bulk(_)));
    assert!(matches!(c.call(&debug("integer")).await, Frame::Integer(_)));
    assert!(matches!(c.call(&debug("double")).await, Frame::Double(_)));
    assert_eq!(c.raw, b",3.141\r\n");
    assert!(matches!(c.call(&debug("bignum")).await, Frame::BigNumber(n) if n.len() > 20));
    assert_eq!(c.call(&debug("null")).await, Frame::Null);
    assert!(matches!(c.call(&debug("array")).await, Frame::Array(items) if !items.is_empty()));
    assert!(matches!(c.call(&debug("set")).await, Frame::Set(items) if !items.is_empty()));
    assert!(matches!(c.call(&debug("map")).await, Frame::Map(pairs) if !pairs.is_empty()));
    assert_eq!(c.call(&debug("true")).await, Frame::Boolean(true));
    assert_eq!(c.call(&debug("false")).await, Frame::Boolean(false));
    assert!(
        matches!(c.call(&debug("verbatim")).await, Frame::Verbatim { format, .. } if &format == b"txt")
    );
    // An attribute arrives with the reply it annotates, as one frame.
    assert!(
        matches!(c.call(&debug("attrib")).await, Frame::Attribute { attributes, .. } if !attributes.is_empty())
    );
    // `push` sends a push frame and then the command's reply.
    c.send(&debug("push")).await;
    assert!(matches!(c.read().await, Frame::Push(items) if !items.is_empty()));
    let _reply = c.read().await;

    c.call(&[b"HSET", b"h", b"f", b"v"]).await;
    assert_eq!(
        c.call(&[b"HGETALL", b"h"]).await,
        Frame::Map(vec![(bulk("f"), bulk("v"))])
    );
    c.call(&[b"ZADD", b"z", b"1.5", b"m"]).await;
    assert_eq!(c.call(&[b"ZSCORE", b"z", b"m"]).await, Frame::Double(1.5));
    assert_eq!(c.call(&[b"GET", b"missing"]).await, Frame::Null);
}
