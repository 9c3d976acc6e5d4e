//! The whole Nexus system in one process: **placeholder**.
//!
//! ```text
//! bash scripts/full_stack.sh            # installs and starts Redis + a Kafka broker, then runs this
//! cargo run --release --example full_stack -- --redis 127.0.0.1:6379 --kafka 127.0.0.1:9092
//! ```
//!
//! Today it only checks that the servers Nexus needs answer (Redis `PING`, a
//! Kafka `ApiVersions` request) and says which programs are not wired in yet.
//! The gateway (port 3000), the cache proxy (port 6380) and the event consumer
//! are added here as their crates land.

use std::{
    env,
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    process::ExitCode,
    time::Duration,
};

const USAGE: &str = "\
Usage: full_stack [--redis HOST:PORT] [--kafka HOST:PORT]

Checks the servers Nexus needs and reports what runs (placeholder: the gateway,
cache proxy and consumer are not wired in yet).

Options:
  --redis HOST:PORT   Redis to use      [env: NEXUS_REDIS_ADDR]      [default: 127.0.0.1:6379]
  --kafka HOST:PORT   Kafka bootstrap   [env: NEXUS_KAFKA_BOOTSTRAP] [default: 127.0.0.1:9092]
  -h, --help          Print this help";

const TIMEOUT: Duration = Duration::from_secs(2);

struct Args {
    redis: String,
    kafka: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        redis: env::var("NEXUS_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into()),
        kafka: env::var("NEXUS_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into()),
    };
    let mut it = env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--redis" => args.redis = it.next().ok_or("--redis needs HOST:PORT")?,
            "--kafka" => args.kafka = it.next().ok_or("--kafka needs HOST:PORT")?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(Some(args))
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("address resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// Redis answers `PING` with `+PONG` (or `-NOAUTH` when it wants a password).
fn check_redis(addr: &str) -> Result<String, String> {
    let mut stream = connect(addr).map_err(|e| e.to_string())?;
    stream
        .write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = [0_u8; 64];
    let n = stream.read(&mut reply).map_err(|e| e.to_string())?;
    let reply = String::from_utf8_lossy(&reply[..n]);
    match reply.trim_end() {
        "+PONG" => Ok("answers PING".into()),
        other if other.starts_with("-NOAUTH") => Ok("answers (requires a password)".into()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// A Kafka broker answers `ApiVersions` v0 with our correlation id and error 0.
fn check_kafka(addr: &str) -> Result<String, String> {
    let mut stream = connect(addr).map_err(|e| e.to_string())?;
    // size, api_key 18, version 0, correlation id 7, client id "full_stack"
    let mut request = vec![0, 0, 0, 0, 0, 18, 0, 0, 0, 0, 0, 7, 0, 10];
    request.extend_from_slice(b"full_stack");
    let size = (request.len() - 4) as u32;
    request[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&request).map_err(|e| e.to_string())?;
    let mut head = [0_u8; 10]; // size, correlation id, error code
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let correlation = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let error = i16::from_be_bytes([head[8], head[9]]);
    match (correlation, error) {
        (7, 0) => Ok("answers ApiVersions".into()),
        _ => Err(format!(
            "unexpected reply: correlation {correlation}, error {error}"
        )),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    println!("Nexus full_stack (placeholder)\n");
    println!("Servers Nexus needs:");
    for (name, addr, check) in [
        (
            "redis",
            &args.redis,
            check_redis as fn(&str) -> Result<String, String>,
        ),
        ("kafka", &args.kafka, check_kafka),
    ] {
        match check(addr) {
            Ok(what) => println!("  ok       {name:<6} {addr:<22} {what}"),
            Err(err) => println!("  MISSING  {name:<6} {addr:<22} {err}"),
        }
    }
    println!(
        "\nNot wired into full_stack yet (their crates are being built):\n  \
         gateway        HTTP API gateway on :3000\n  \
         cache proxy    RESP cache proxy on :6380\n  \
         consumer       Kafka event consumer\n\n\
         full_stack itself started nothing. `bash scripts/test.sh` runs the test suite."
    );
    ExitCode::SUCCESS
}
