//! Differential tests: the same client conversation sent to Redis directly and
//! through the proxy must produce byte-identical replies.
#![allow(clippy::unwrap_used)]

mod common;

use anyhow::Result;
use common::{Conn, Pair, cmd, show};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_empty_nil_and_errors_pass_through_verbatim() -> Result<()> {
    let pair = Pair::start().await?;
    let binary = b"a\r\nb\0c\r\n\n\r$3\r\n*1\r\n\xff\xfe";
    let mut script = Vec::new();
    script.extend(cmd(&[b"SET", b"bin\r\nkey\0", binary]));
    script.extend(cmd(&[b"GET", b"bin\r\nkey\0"]));
    script.extend(cmd(&[b"SET", b"empty", b""]));
    script.extend(cmd(&[b"GET", b"empty"]));
    script.extend(cmd(&[b"GET", b"missing"]));
    script.extend(cmd(&[b"MGET", b"empty", b"missing", b"bin\r\nkey\0"]));
    script.extend(cmd(&[b"INCR", b"bin\r\nkey\0"])); // not an integer
    script.extend(cmd(&[b"LPUSH", b"empty", b"x"])); // WRONGTYPE
    script.extend(cmd(&[b"NOSUCHCOMMAND", b"arg"]));
    script.extend(cmd(&[b"GET"])); // wrong arity
    script.extend(cmd(&[
        b"EVAL",
        b"return redis.error_reply('MYERR custom\\tmessage')",
        b"0",
    ]));
    script.extend(cmd(&[b"APPEND", b"empty", b"\0\0"]));
    script.extend(cmd(&[b"GETRANGE", b"bin\r\nkey\0", b"0", b"4"]));
    let out = pair.assert_same(&[(&script, 13)]).await?;
    assert!(
        out.windows(binary.len()).any(|w| w == binary),
        "value not echoed: {}",
        show(&out)
    );
    assert!(out.windows(5).any(|w| w == b"$-1\r\n"), "nil missing");
    assert!(out.windows(4).any(|w| w == b"-WRO"), "WRONGTYPE missing");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_mib_values_round_trip() -> Result<()> {
    let pair = Pair::start().await?;
    let big: Vec<u8> = (0..16 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut script = cmd(&[b"SET", b"big", &big]);
    script.extend(cmd(&[b"GET", b"big"]));
    script.extend(cmd(&[b"STRLEN", b"big"]));
    script.extend(cmd(&[b"GET", b"big"]));
    let out = pair.assert_same(&[(&script, 4)]).await?;
    assert!(out.len() > 32 * 1024 * 1024);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_replies_are_identical() -> Result<()> {
    let pair = Pair::start().await?;
    let mut script = Vec::new();
    script.extend(cmd(&[
        b"HSET", b"h", b"f1", b"v1", b"f2", b"", b"f\r\n3", b"v\x003",
    ]));
    script.extend(cmd(&[b"HGETALL", b"h"]));
    script.extend(cmd(&[
        b"ZADD", b"z", b"1.5", b"a", b"-2", b"b", b"3e10", b"c",
    ]));
    script.extend(cmd(&[b"ZRANGE", b"z", b"0", b"-1", b"WITHSCORES"]));
    script.extend(cmd(&[b"XADD", b"s", b"1-1", b"k", b"v", b"k2", b"v2"]));
    script.extend(cmd(&[b"XADD", b"s", b"2-1", b"only", b""]));
    script.extend(cmd(&[b"XRANGE", b"s", b"-", b"+"]));
    script.extend(cmd(&[
        b"EVAL",
        b"return {1, {2, {3, 'deep', {}}}, 'x', false, redis.call('HGETALL', KEYS[1])}",
        b"1",
        b"h",
    ]));
    script.extend(cmd(&[b"LRANGE", b"nolist", b"0", b"-1"]));
    pair.assert_same(&[(&script, 9)]).await?;
    // Keyspace iteration order depends on each server's hash seed: compare SCAN
    // on one server, directly and through the proxy.
    let mut fill = Conn::connect(pair.behind.addr()).await?;
    fill.call(&[b"MSET", b"s1", b"1", b"s2", b"2", b"s3", b"3", b"t1", b"x"])
        .await?;
    let scan = cmd(&[b"SCAN", b"0", b"MATCH", b"s?", b"COUNT", b"100"]);
    let direct = common::transcript(pair.behind.addr(), &[(&scan, 1)]).await?;
    let proxied = common::transcript(pair.proxy.addr, &[(&scan, 1)]).await?;
    assert_eq!(show(&direct), show(&proxied));
    assert!(
        direct.starts_with(b"*2\r\n$1\r\n0\r\n*3\r\n"),
        "{}",
        show(&direct)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_pipelined_mixed_commands_in_one_write() -> Result<()> {
    let pair = Pair::start().await?;
    let mut script = Vec::new();
    for i in 0..10_000u32 {
        let key = format!("k{}", i % 97);
        let n = i.to_string();
        let c = match i % 8 {
            0 => cmd(&[b"SET", key.as_bytes(), n.as_bytes()]),
            1 => cmd(&[b"GET", key.as_bytes()]),
            2 => cmd(&[b"INCR", format!("c{}", i % 13).as_bytes()]),
            3 => cmd(&[b"LPUSH", b"list", n.as_bytes()]),
            4 => cmd(&[b"LRANGE", b"list", b"0", b"3"]),
            5 => cmd(&[b"HINCRBY", b"hash", key.as_bytes(), b"2"]),
            6 => cmd(&[b"INCR", b"list"]), // WRONGTYPE error
            _ => format!("PING {i}\r\n").into_bytes(), // inline
        };
        script.extend(c);
    }
    let out = pair.assert_same(&[(&script, 10_000)]).await?;
    assert!(out.len() > 100_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands_and_empty_lines() -> Result<()> {
    let pair = Pair::start().await?;
    let script = b"SET greeting hello\r\n\r\nGET greeting\r\n  \r\nPING\r\nEXISTS greeting nope\r\n*0\r\nECHO 'two words'\n";
    let out = pair.assert_same(&[(script, 5)]).await?;
    assert_eq!(
        out,
        b"+OK\r\n$5\r\nhello\r\n+PONG\r\n:1\r\n$9\r\ntwo words\r\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_answers_ok_then_closes() -> Result<()> {
    let pair = Pair::start().await?;
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut c = Conn::connect(addr).await?;
        let mut script = cmd(&[b"SET", b"a", b"1"]);
        script.extend(cmd(&[b"QUIT"]));
        script.extend(cmd(&[b"GET", b"a"])); // after QUIT: never answered
        c.send(&script).await?;
        assert_eq!(c.read_frames(2).await?, b"+OK\r\n+OK\r\n");
        assert_eq!(c.read_to_eof().await?, b"", "nothing after QUIT ({addr})");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_and_watch() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut a = Conn::connect(addr).await?;
        let mut b = Conn::connect(addr).await?;
        let mut out = Vec::new();
        // A plain transaction, with a queued error.
        let mut t = cmd(&[b"MULTI"]);
        t.extend(cmd(&[b"SET", b"k", b"1"]));
        t.extend(cmd(&[b"INCR", b"k"]));
        t.extend(cmd(&[b"LPUSH", b"k", b"x"]));
        t.extend(cmd(&[b"EXEC"]));
        a.send(&t).await?;
        out.extend(a.read_frames(5).await?);
        // WATCH broken by another client: EXEC returns nil.
        out.extend(a.call(&[b"WATCH", b"k"]).await?);
        out.extend(b.call(&[b"SET", b"k", b"changed"]).await?);
        let mut t = cmd(&[b"MULTI"]);
        t.extend(cmd(&[b"SET", b"k", b"mine"]));
        t.extend(cmd(&[b"EXEC"]));
        a.send(&t).await?;
        out.extend(a.read_frames(3).await?);
        out.extend(b.call(&[b"GET", b"k"]).await?);
        // WATCH not broken: EXEC applies.
        out.extend(a.call(&[b"WATCH", b"k"]).await?);
        let mut t = cmd(&[b"MULTI"]);
        t.extend(cmd(&[b"SET", b"k", b"mine"]));
        t.extend(cmd(&[b"EXEC"]));
        t.extend(cmd(&[b"DISCARD"]));
        a.send(&t).await?;
        out.extend(a.read_frames(4).await?);
        out.extend(b.call(&[b"GET", b"k"]).await?);
        // EXEC without MULTI on an unpinned connection.
        out.extend(b.call(&[b"EXEC"]).await?);
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(
        outs[1].windows(5).any(|w| w == b"*-1\r\n"),
        "aborted EXEC must be nil"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_is_isolated_per_client() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut a = Conn::connect(addr).await?;
        let mut b = Conn::connect(addr).await?;
        let mut out = Vec::new();
        out.extend(a.call(&[b"SELECT", b"5"]).await?);
        out.extend(a.call(&[b"SET", b"k", b"in5"]).await?);
        out.extend(b.call(&[b"GET", b"k"]).await?); // db 0: nil
        out.extend(b.call(&[b"SET", b"k", b"in0"]).await?);
        out.extend(a.call(&[b"GET", b"k"]).await?);
        out.extend(a.call(&[b"SELECT", b"0"]).await?);
        out.extend(a.call(&[b"GET", b"k"]).await?);
        out.extend(b.call(&[b"SELECT", b"banana"]).await?);
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(show(&outs[1]).contains("$3⏎in5⏎"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blpop_is_woken_by_another_client() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut a = Conn::connect(addr).await?;
        let mut b = Conn::connect(addr).await?;
        a.send(&cmd(&[b"BLPOP", b"queue", b"5"])).await?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Other clients are not blocked by the waiting one.
        let mut out = b.call(&[b"SET", b"other", b"fine"]).await?;
        out.extend(b.call(&[b"RPUSH", b"queue", b"job\r\n1"]).await?);
        out.extend(a.read_frames(1).await?);
        out.extend(a.call(&[b"GET", b"other"]).await?);
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(show(&outs[1]).contains("$5⏎queue⏎$6⏎job"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_in_and_out_of_subscribe_mode() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut sub = Conn::connect(addr).await?;
        let mut publisher = Conn::connect(addr).await?;
        let mut out = sub.call(&[b"SET", b"before", b"1"]).await?;
        let mut s = cmd(&[b"SUBSCRIBE", b"news", b"sport"]);
        s.extend(cmd(&[b"PSUBSCRIBE", b"n*"]));
        sub.send(&s).await?;
        out.extend(sub.read_frames(3).await?);
        out.extend(
            publisher
                .call(&[b"PUBLISH", b"news", b"hello\r\nworld"])
                .await?,
        );
        out.extend(sub.read_frames(2).await?); // message + pmessage
        out.extend(sub.call(&[b"PING"]).await?);
        out.extend(sub.call(&[b"GET", b"before"]).await?); // refused in subscribe mode
        let mut u = cmd(&[b"UNSUBSCRIBE", b"news", b"sport"]);
        u.extend(cmd(&[b"PUNSUBSCRIBE"]));
        sub.send(&u).await?;
        out.extend(sub.read_frames(3).await?);
        out.extend(sub.call(&[b"GET", b"before"]).await?);
        out.extend(publisher.call(&[b"PUBLISH", b"news", b"nobody"]).await?);
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(show(&outs[1]).contains("$7⏎message⏎$4⏎news⏎$12⏎hello"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_via_hello_3() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut c = Conn::connect(addr).await?;
        let hello = c.call(&[b"HELLO", b"3"]).await?;
        assert!(
            hello.starts_with(b"%7\r\n"),
            "HELLO 3 reply: {}",
            show(&hello)
        );
        let mut out = c.call(&[b"HSET", b"h", b"a", b"1"]).await?;
        out.extend(c.call(&[b"HGETALL", b"h"]).await?);
        out.extend(c.call(&[b"GET", b"nope"]).await?);
        out.extend(c.call(&[b"ZADD", b"z", b"1.5", b"m"]).await?);
        out.extend(c.call(&[b"ZSCORE", b"z", b"m"]).await?);
        out.extend(c.call(&[b"SMEMBERS", b"nope"]).await?);
        out.extend(c.call(&[b"EVAL", b"return {double='1.5'}", b"0"]).await?);
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(outs[1].starts_with(b":1\r\n%1\r\n$1\r\na\r\n$1\r\n1\r\n_\r\n"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_redis() -> Result<()> {
    let pair = Pair::start_with(Some("s3cret pw"), |b| b).await?;
    let mut script = cmd(&[b"GET", b"k"]);
    script.extend(cmd(&[b"AUTH", b"wrong"]));
    script.extend(cmd(&[b"AUTH", b"default", b"wrong"]));
    script.extend(cmd(&[b"AUTH"]));
    script.extend(cmd(&[b"HELLO", b"3"]));
    script.extend(cmd(&[b"AUTH", b"s3cret pw"]));
    script.extend(cmd(&[b"SET", b"k", b"v"]));
    script.extend(cmd(&[b"GET", b"k"]));
    script.extend(cmd(&[b"AUTH", b"default", b"s3cret pw"]));
    let out = pair.assert_same(&[(&script, 9)]).await?;
    assert!(out.starts_with(b"-NOAUTH"), "{}", show(&out));
    // HELLO with AUTH authenticates and switches protocol in one step.
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        let mut c = Conn::connect(addr).await?;
        let hello = c
            .call(&[b"HELLO", b"3", b"AUTH", b"default", b"s3cret pw"])
            .await?;
        assert!(hello.starts_with(b"%7\r\n"), "{}", show(&hello));
        assert_eq!(c.call(&[b"GET", b"nokey"]).await?, b"_\r\n");
        let mut c = Conn::connect(addr).await?;
        let hello = c
            .call(&[b"HELLO", b"2", b"AUTH", b"default", b"nope"])
            .await?;
        assert!(hello.starts_with(b"-WRONGPASS"), "{}", show(&hello));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_caching_invalidations_arrive() -> Result<()> {
    let pair = Pair::start().await?;
    let mut outs = Vec::new();
    for addr in [pair.direct.addr(), pair.proxy.addr] {
        // RESP3: invalidations are pushes on the tracking connection itself.
        let mut a = Conn::connect(addr).await?;
        let mut writer = Conn::connect(addr).await?;
        a.call(&[b"HELLO", b"3"]).await?;
        let mut out = a.call(&[b"CLIENT", b"TRACKING", b"on"]).await?;
        out.extend(a.call(&[b"GET", b"tracked"]).await?);
        out.extend(writer.call(&[b"SET", b"tracked", b"1"]).await?);
        out.extend(a.read_frames(1).await?); // the invalidation push
        out.extend(a.call(&[b"GET", b"tracked"]).await?);
        // RESP2: invalidations are redirected to another connection, named by its id.
        let mut r = Conn::connect(addr).await?;
        let id = String::from_utf8(r.call(&[b"CLIENT", b"ID"]).await?)?;
        let id = id.trim_start_matches(':').trim_end();
        out.extend(r.call(&[b"SUBSCRIBE", b"__redis__:invalidate"]).await?);
        let mut b = Conn::connect(addr).await?;
        out.extend(
            b.call(&[b"CLIENT", b"TRACKING", b"on", b"REDIRECT", id.as_bytes()])
                .await?,
        );
        out.extend(b.call(&[b"GET", b"other"]).await?);
        out.extend(writer.call(&[b"SET", b"other", b"2"]).await?);
        out.extend(r.read_frames(1).await?); // the redirected invalidation
        outs.push(out);
    }
    assert_eq!(show(&outs[0]), show(&outs[1]));
    assert!(
        show(&outs[1]).contains(">2⏎$10⏎invalidate⏎*1⏎$7⏎tracked⏎"),
        "{}",
        show(&outs[1])
    );
    assert!(show(&outs[1]).ends_with("$7⏎message⏎$20⏎__redis__:invalidate⏎*1⏎$5⏎other⏎"));
    Ok(())
}
