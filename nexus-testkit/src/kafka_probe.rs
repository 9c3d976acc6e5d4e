//! A hand-encoded Kafka `Metadata` v0 request: just enough protocol to know
//! that a broker is up and advertises the address it listens on.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

const API_KEY_METADATA: i16 = 3;
const CORRELATION_ID: i32 = 0x6E78_7573; // "nxus"
const CLIENT_ID: &[u8] = b"nexus-testkit";
/// Largest metadata response the probe reads; a fresh test broker answers in bytes.
const MAX_RESPONSE: usize = 1024 * 1024;

/// One broker entry of a metadata response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdvertisedBroker {
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Sends `Metadata` v0 (all topics) and returns the advertised brokers.
pub(crate) fn metadata(
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Vec<AdvertisedBroker>> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(&encode_request())?;

    let mut size = [0_u8; 4];
    stream.read_exact(&mut size)?;
    let size = usize::try_from(i32::from_be_bytes(size)).map_err(|_| invalid("negative size"))?;
    if size > MAX_RESPONSE {
        return Err(invalid("response larger than 1 MiB"));
    }
    let mut body = vec![0_u8; size];
    stream.read_exact(&mut body)?;
    decode_response(&body)
}

fn encode_request() -> Vec<u8> {
    let mut message = Vec::with_capacity(32);
    message.extend_from_slice(&API_KEY_METADATA.to_be_bytes());
    message.extend_from_slice(&0_i16.to_be_bytes()); // api_version
    message.extend_from_slice(&CORRELATION_ID.to_be_bytes());
    message.extend_from_slice(&(CLIENT_ID.len() as i16).to_be_bytes());
    message.extend_from_slice(CLIENT_ID);
    message.extend_from_slice(&0_i32.to_be_bytes()); // topics: empty = all
    let mut framed = Vec::with_capacity(message.len() + 4);
    framed.extend_from_slice(&(message.len() as i32).to_be_bytes());
    framed.extend_from_slice(&message);
    framed
}

fn decode_response(body: &[u8]) -> std::io::Result<Vec<AdvertisedBroker>> {
    let mut cursor = Cursor(body);
    if cursor.i32()? != CORRELATION_ID {
        return Err(invalid("correlation id mismatch"));
    }
    let count = cursor.i32()?;
    if !(0..=1024).contains(&count) {
        return Err(invalid("implausible broker count"));
    }
    let mut brokers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let node_id = cursor.i32()?;
        let host = cursor.string()?;
        let port = u16::try_from(cursor.i32()?).map_err(|_| invalid("port out of range"))?;
        brokers.push(AdvertisedBroker {
            node_id,
            host,
            port,
        });
    }
    Ok(brokers)
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("metadata response: {what}"),
    )
}

/// A bounds-checked reader over a response body.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(invalid("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn i32(&mut self) -> std::io::Result<i32> {
        let bytes = self.take(4)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn string(&mut self) -> std::io::Result<String> {
        let len = self.take(2)?;
        let len = usize::try_from(i16::from_be_bytes([len[0], len[1]]))
            .map_err(|_| invalid("null host"))?;
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_brokers_and_rejects_garbage() {
        let mut body = Vec::new();
        body.extend_from_slice(&CORRELATION_ID.to_be_bytes());
        body.extend_from_slice(&1_i32.to_be_bytes());
        body.extend_from_slice(&111_i32.to_be_bytes());
        body.extend_from_slice(&9_i16.to_be_bytes());
        body.extend_from_slice(b"127.0.0.1");
        body.extend_from_slice(&39092_i32.to_be_bytes());
        body.extend_from_slice(&0_i32.to_be_bytes()); // topics
        let brokers = decode_response(&body).expect("valid response");
        assert_eq!(
            brokers,
            vec![AdvertisedBroker {
                node_id: 111,
                host: "127.0.0.1".into(),
                port: 39092
            }]
        );
        for cut in 0..body.len() - 4 {
            assert!(decode_response(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_id = body.clone();
        wrong_id[0] ^= 1;
        assert!(decode_response(&wrong_id).is_err());
    }

    #[test]
    fn request_is_framed() {
        let request = encode_request();
        let len = i32::from_be_bytes([request[0], request[1], request[2], request[3]]);
        assert_eq!(len as usize, request.len() - 4);
        assert_eq!(&request[4..6], &API_KEY_METADATA.to_be_bytes());
    }
}
