//! Clients nobody here wrote: the `redis` crate, `redis-cli` and `redis-benchmark`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use common::{ProxyHandle, WAIT};
use nexus_testkit::RedisServer;
use redis::AsyncCommands;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_works_through_the_proxy() -> Result<()> {
    let redis = RedisServer::builder().password("pw").start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    for url in [
        format!("redis://:pw@{}/", proxy.addr),
        format!("redis://:pw@{}/?protocol=resp3", proxy.addr),
        format!("redis://:pw@{}/3", proxy.addr),
    ] {
        let client = redis::Client::open(url.as_str())?;
        let mut con = tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
            .await
            .context("connect timed out")??;
        let value: Vec<u8> = b"bin\r\n\0value".to_vec();
        let _: () = con.set("k", &value).await?;
        let got: Vec<u8> = con.get("k").await?;
        assert_eq!(got, value, "{url}");
        let missing: Option<String> = con.get("missing").await?;
        assert_eq!(missing, None);
        let (a, b): (i64, i64) = redis::pipe()
            .atomic()
            .incr("n", 1)
            .incr("n", 2)
            .query_async(&mut con)
            .await?;
        assert_eq!((a, b), (1, 3), "{url}");
        let err = con.incr::<_, _, i64>("k", 1).await.unwrap_err();
        assert!(err.to_string().contains("not an integer"), "{err}");
        let _: () = con.del(&["k", "n"]).await?;
    }
    // The database in the URL was honoured (SELECT 3 pinned that client).
    assert_eq!(redis.cli(["-n", "3", "DBSIZE"]).await?, "0");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_commands_and_pipe_mode() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let port = proxy.addr.port().to_string();
    let cli = |args: &[&str]| {
        let mut c = Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &port])
            .args(args)
            .kill_on_drop(true);
        c
    };
    let out =
        tokio::time::timeout(WAIT, cli(&["SET", "greeting", "hello world"]).output()).await??;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "OK");
    let out = tokio::time::timeout(WAIT, cli(&["GET", "greeting"]).output()).await??;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), "hello world");
    // --pipe: mass insertion of raw protocol, 20,000 commands.
    let mut input = Vec::new();
    for i in 0..20_000 {
        input.extend(common::cmd(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("value:{i}").as_bytes(),
        ]));
    }
    let mut child = cli(&["--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await?;
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await??;
    let text = String::from_utf8(out.stdout)?;
    ensure!(text.contains("errors: 0, replies: 20000"), "{text}");
    assert_eq!(redis.cli(["DBSIZE"]).await?, "20001");
    assert_eq!(redis.cli(["GET", "key:19999"]).await?, "value:19999");
    proxy.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_through_the_proxy() -> Result<()> {
    let redis = RedisServer::start().await?;
    let proxy = ProxyHandle::start(&redis.url(), |b| b).await?;
    let port = proxy.addr.port().to_string();
    for pipeline in ["1", "16"] {
        let out = tokio::time::timeout(
            WAIT * 3,
            Command::new("redis-benchmark")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-t",
                    "set,get,incr,lpush,lrange_100,mset",
                    "-n",
                    "2000",
                ])
                .args(["-c", "20", "-P", pipeline, "-q"])
                .kill_on_drop(true)
                .output(),
        )
        .await??;
        let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
        ensure!(out.status.success(), "{text}");
        for test in ["SET:", "GET:", "INCR:", "LPUSH:", "LRANGE_100", "MSET"] {
            ensure!(
                text.lines()
                    .any(|l| l.starts_with(test) && l.contains("requests per second")),
                "{test} missing in {text}"
            );
        }
    }
    let stats = proxy.metrics.snapshot();
    assert!(stats.commands >= 2 * 6 * 2000, "{stats:?}");
    assert_eq!(stats.proxy_errors, 0, "{stats:?}");
    assert_eq!(redis.cli(["GET", "key:__rand_int__"]).await?.len(), 3);
    proxy.stop().await
}
