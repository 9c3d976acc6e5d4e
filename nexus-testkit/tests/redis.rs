//! RedisServer against real `redis-server`, checked with `redis-cli`.
#![allow(clippy::unwrap_used)]

use std::{net::TcpStream, time::Duration};

use nexus_testkit::{Error, RedisServer};

#[tokio::test]
async fn round_trips_a_value_through_redis_cli() {
    let redis = RedisServer::start().await.unwrap();
    assert!(redis.addr().ip().is_loopback());
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(redis.cli(["SET", "k", "v1"]).await.unwrap(), "OK");
    assert_eq!(redis.cli(["GET", "k"]).await.unwrap(), "v1");
}

#[tokio::test]
async fn runs_without_persistence() {
    let redis = RedisServer::start().await.unwrap();
    assert_eq!(redis.cli(["CONFIG", "GET", "save"]).await.unwrap(), "save");
    assert_eq!(
        redis.cli(["CONFIG", "GET", "appendonly"]).await.unwrap(),
        "appendonly\nno"
    );
}

#[tokio::test]
async fn restarts_on_the_same_port_empty() {
    let redis = RedisServer::start().await.unwrap();
    let port = redis.port();
    let first_pid = redis.pid().unwrap();
    redis.cli(["SET", "k", "v"]).await.unwrap();

    redis.stop();
    assert!(!redis.is_running());
    assert!(TcpStream::connect_timeout(&redis.addr(), Duration::from_millis(200)).is_err());

    redis.restart().await.unwrap();
    assert_eq!(redis.port(), port);
    assert_ne!(redis.pid().unwrap(), first_pid);
    assert_eq!(redis.cli(["PING"]).await.unwrap(), "PONG");
    // No persistence: the restarted server is empty.
    assert_eq!(redis.cli(["EXISTS", "k"]).await.unwrap(), "0");
}

#[tokio::test]
async fn password_is_required() {
    let redis = RedisServer::builder().password("pw").start().await.unwrap();
    assert_eq!(
        redis.url(),
        format!("redis://:pw@127.0.0.1:{}", redis.port())
    );
    // cli() authenticates with the password ...
    assert_eq!(redis.cli(["PING"]).await.unwrap(), "PONG");
    // ... and a client without it is refused.
    let anonymous = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port().to_string(), "PING"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&anonymous.stdout);
    assert!(stdout.contains("NOAUTH"), "got {stdout:?}");
}

#[tokio::test]
async fn starts_several_independent_servers() {
    let servers = RedisServer::builder().start_many(3).await.unwrap();
    assert_eq!(servers.len(), 3);
    for (i, server) in servers.iter().enumerate() {
        server.cli(["SET", "who", &i.to_string()]).await.unwrap();
    }
    for (i, server) in servers.iter().enumerate() {
        assert_eq!(server.cli(["GET", "who"]).await.unwrap(), i.to_string());
    }
    let mut ports: Vec<_> = servers.iter().map(RedisServer::port).collect();
    ports.dedup();
    assert_eq!(ports.len(), 3);
}

#[tokio::test]
async fn drop_kills_the_process_and_removes_its_directory() {
    let redis = RedisServer::start().await.unwrap();
    let pid = redis.pid().unwrap();
    let dir = redis.dir().to_path_buf();
    let addr = redis.addr();
    drop(redis);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[tokio::test]
async fn extra_arguments_reach_the_server() {
    let redis = RedisServer::builder()
        .arg("--maxmemory")
        .arg("12mb")
        .start()
        .await
        .unwrap();
    assert_eq!(
        redis.cli(["CONFIG", "GET", "maxmemory"]).await.unwrap(),
        format!("maxmemory\n{}", 12 * 1024 * 1024)
    );
}

#[tokio::test]
async fn a_server_that_cannot_start_reports_its_log() {
    let err = RedisServer::builder()
        .arg("--no-such-option")
        .arg("x")
        .start()
        .await
        .unwrap_err();
    match err {
        Error::Exited { log, .. } => assert!(log.contains("no-such-option"), "log: {log}"),
        other => panic!("expected Exited, got {other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn start_is_not_fooled_by_a_paused_clock() {
    let redis = RedisServer::start().await.unwrap();
    assert_eq!(redis.cli(["PING"]).await.unwrap(), "PONG");
}

#[tokio::test]
async fn a_taken_fixed_port_is_not_mistaken_for_our_server() {
    let first = RedisServer::start().await.unwrap();
    // The second server cannot bind; the first one answering PING on that
    // port must not make the start look successful.
    let err = RedisServer::builder()
        .port(first.port())
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Exited { .. } | Error::NotReady { .. }),
        "{err}"
    );
    assert_eq!(first.cli(["PING"]).await.unwrap(), "PONG");
}
