//! Tag invalidation against a real redis-server (from nexus-testkit).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::SeqCst};
use std::time::Duration;

use nexus_cache::MechanismMetrics;
use nexus_cache::hotkeys::EXTEND_TTL_SCRIPT;
use nexus_cache::tags::{Expiry, TagError, Tagger, script};
use nexus_testkit::RedisServer;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

const BOUND: Duration = Duration::from_secs(60);

async fn connect(server: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    timeout(
        Duration::from_secs(10),
        client.get_multiplexed_async_connection(),
    )
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn tag_then_invalidate_deletes_exactly_the_tagged_keys() {
    let server = RedisServer::start().await.unwrap();
    let mut con = connect(&server).await;
    let metrics = Arc::new(MechanismMetrics::default());
    let tagger = Tagger::new().with_metrics(Arc::clone(&metrics));

    for k in ["product:1", "product:2", "user:1"] {
        let _: () = con.set(k, "v").await.unwrap();
    }
    assert_eq!(
        tagger
            .tag(&mut con, "products", &["product:1", "product:2"])
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        tagger
            .tag(&mut con, "products", &["product:1"])
            .await
            .unwrap(),
        0
    );
    assert_eq!(tagger.tag(&mut con, "users", &["user:1"]).await.unwrap(), 1);
    // A tagged key that no longer exists is not counted.
    assert_eq!(
        tagger
            .tag(&mut con, "products", &["product:gone"])
            .await
            .unwrap(),
        1
    );

    let deleted = timeout(BOUND, tagger.invalidate(&mut con, "products"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(deleted, 2);
    let left: Vec<Option<String>> = con
        .mget(&["product:1", "product:2", "user:1"])
        .await
        .unwrap();
    assert_eq!(left, vec![None, None, Some("v".to_owned())]);
    let set_exists: bool = con.exists("tag:products").await.unwrap();
    assert!(!set_exists, "the tag set goes with its keys");
    assert_eq!(tagger.invalidate(&mut con, "products").await.unwrap(), 0);

    let snap = metrics.snapshot();
    assert_eq!((snap.invalidations, snap.invalidated_keys), (2, 2));
    assert!(matches!(
        tagger.tag::<_, &str>(&mut con, "t", &[]).await,
        Err(TagError::Invalid(_))
    ));
    assert!(matches!(
        tagger.invalidate(&mut con, "").await,
        Err(TagError::Invalid(_))
    ));
}

#[tokio::test]
async fn set_tagged_writes_and_tags_in_one_step() {
    let server = RedisServer::start().await.unwrap();
    let mut con = connect(&server).await;
    let tagger = Tagger::with_prefix("t:");

    tagger
        .set_tagged(
            &mut con,
            "product:9",
            b"\x00binary\xff",
            Some(Expiry::Millis(50_000)),
            &["products", "sale"],
        )
        .await
        .unwrap();
    tagger
        .set_tagged(
            &mut con,
            "product:10",
            "v",
            Some(Expiry::Seconds(60)),
            &["products"],
        )
        .await
        .unwrap();
    tagger
        .set_tagged(&mut con, "product:11", "v", None, &[])
        .await
        .unwrap();

    let value: Vec<u8> = con.get("product:9").await.unwrap();
    assert_eq!(value, b"\x00binary\xff");
    let pttl: i64 = con.pttl("product:9").await.unwrap();
    assert!((1..=50_000).contains(&pttl), "pttl {pttl}");
    let ttl: i64 = con.ttl("product:10").await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    let ttl: i64 = con.ttl("product:11").await.unwrap();
    assert_eq!(ttl, -1);
    let mut members: Vec<String> = con.smembers("t:products").await.unwrap();
    members.sort();
    assert_eq!(members, vec!["product:10", "product:9"]);
    let sale: Vec<String> = con.smembers("t:sale").await.unwrap();
    assert_eq!(sale, vec!["product:9"]);

    assert_eq!(tagger.invalidate(&mut con, "sale").await.unwrap(), 1);
    let exists: bool = con.exists("product:10").await.unwrap();
    assert!(exists, "only the sale tag was invalidated");
}

#[tokio::test]
async fn write_and_tag_script_passes_replies_through() {
    let server = RedisServer::start().await.unwrap();
    let mut con = connect(&server).await;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(script::WRITE_AND_TAG)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = con.set("k", "old").await.unwrap();

    // SET NX on an existing key writes nothing: nil reply, key not tagged.
    let reply: Option<String> = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(2)
        .arg("k")
        .arg("tag:a")
        .arg(&["SET", "k", "new", "NX"])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(reply, None);
    let tagged: bool = con.sismember("tag:a", "k").await.unwrap();
    assert!(!tagged);

    // SET ... GET returns the old value and tags.
    let reply: Option<String> = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(2)
        .arg("k")
        .arg("tag:a")
        .arg(&["SET", "k", "new", "GET"])
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some("old"));
    let tagged: bool = con.sismember("tag:a", "k").await.unwrap();
    assert!(tagged);

    // An error from the write comes back as an error and tags nothing.
    let err = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(2)
        .arg("k")
        .arg("tag:b")
        .arg(&["INCR", "k"])
        .query_async::<i64>(&mut con)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let tagged: bool = con.exists("tag:b").await.unwrap();
    assert!(!tagged);
}

#[tokio::test]
async fn noscript_after_script_flush_or_restart_recovers() {
    let server = RedisServer::start().await.unwrap();
    let mut con = connect(&server).await;
    let tagger = Tagger::new();
    let _: () = con.set("a", "1").await.unwrap();
    tagger.tag(&mut con, "t", &["a"]).await.unwrap();

    server.cli(["SCRIPT", "FLUSH"]).await.unwrap();
    let _: () = con.set("b", "1").await.unwrap();
    // The cached SHA is now unknown to Redis: NOSCRIPT, reload, retry.
    assert_eq!(tagger.tag(&mut con, "t", &["b"]).await.unwrap(), 1);
    assert_eq!(tagger.invalidate(&mut con, "t").await.unwrap(), 2);

    server.restart().await.unwrap();
    let mut con = connect(&server).await;
    let _: () = con.set("c", "1").await.unwrap();
    tagger
        .set_tagged(&mut con, "d", "1", None, &["t"])
        .await
        .unwrap();
    tagger.tag(&mut con, "t", &["c"]).await.unwrap();
    assert_eq!(tagger.invalidate(&mut con, "t").await.unwrap(), 2);
}

/// Writers keep writing and tagging fresh keys while the tag is invalidated
/// repeatedly. Every key whose write was acknowledged before an invalidation
/// began must be gone after it, and no key may exist untagged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_racing_with_writes_leaves_no_tagged_key_behind() {
    let server = RedisServer::start().await.unwrap();
    let tagger = Arc::new(Tagger::new());
    let stop = Arc::new(AtomicBool::new(false));
    const WRITERS: usize = 4;
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..WRITERS).map(|_| AtomicI64::new(-1)).collect());

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut con = connect(&server).await;
        let (tagger, stop, acked) = (Arc::clone(&tagger), Arc::clone(&stop), Arc::clone(&acked));
        writers.push(tokio::spawn(async move {
            let mut i: i64 = 0;
            while !stop.load(SeqCst) && i < 200_000 {
                tagger
                    .set_tagged(&mut con, format!("w{w}:{i}"), "v", None, &["hot"])
                    .await
                    .unwrap();
                acked[w].store(i, SeqCst);
                i += 1;
            }
        }));
    }

    let mut con = connect(&server).await;
    let mut checked = 0;
    for _round in 0..10 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before: Vec<i64> = acked.iter().map(|a| a.load(SeqCst)).collect();
        let deleted = timeout(BOUND, tagger.invalidate(&mut con, "hot"))
            .await
            .unwrap()
            .unwrap();
        for (w, last) in before.iter().enumerate() {
            if *last < 0 {
                continue;
            }
            // Keys are never rewritten, so any key up to `last` that exists
            // now survived an invalidation that began after it was written.
            let keys: Vec<String> = (0..=*last).map(|i| format!("w{w}:{i}")).collect();
            for chunk in keys.chunks(1000) {
                let n: usize = redis::cmd("EXISTS")
                    .arg(chunk)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                assert_eq!(
                    n, 0,
                    "writer {w}: a key acknowledged before the invalidation survived it"
                );
                checked += chunk.len();
            }
        }
        assert!(deleted > 0 || before.iter().all(|b| *b < 0));
    }
    stop.store(true, SeqCst);
    for w in writers {
        timeout(BOUND, w).await.unwrap().unwrap();
    }
    assert!(checked > 0, "the writers made no progress");

    // No key exists without being in the tag set.
    let keys: Vec<String> = con.keys("w*").await.unwrap();
    for chunk in keys.chunks(1000) {
        let flags: Vec<bool> = redis::cmd("SMISMEMBER")
            .arg("tag:hot")
            .arg(chunk)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(
            flags.iter().all(|f| *f),
            "a written key is missing from its tag"
        );
    }
    let deleted = tagger.invalidate(&mut con, "hot").await.unwrap();
    assert_eq!(deleted as usize, keys.len());
}

#[tokio::test]
async fn extend_ttl_script_respects_the_ceiling_and_persistent_keys() {
    let server = RedisServer::start().await.unwrap();
    let mut con = connect(&server).await;
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(EXTEND_TTL_SCRIPT)
        .query_async(&mut con)
        .await
        .unwrap();
    let extend = |key: &'static str| {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&sha).arg(1).arg(key).arg(60_000).arg(300_000);
        cmd
    };
    let _: () = con.set_ex("k60", "v", 60).await.unwrap();
    let _: () = con.set_ex("k290", "v", 290).await.unwrap();
    let _: () = con.set_ex("k900", "v", 900).await.unwrap();
    let _: () = con.set("persistent", "v").await.unwrap();

    let t: i64 = extend("k60").query_async(&mut con).await.unwrap();
    assert!((119_000..=120_000).contains(&t), "{t}");
    let t: i64 = extend("k290").query_async(&mut con).await.unwrap();
    assert_eq!(t, 300_000);
    let t: i64 = extend("k900").query_async(&mut con).await.unwrap();
    assert!(t > 300_000, "above the ceiling already: untouched ({t})");
    let t: i64 = extend("persistent").query_async(&mut con).await.unwrap();
    assert_eq!(t, -1);
    let ttl: i64 = con.ttl("persistent").await.unwrap();
    assert_eq!(ttl, -1, "a key without a TTL keeps none");
    let t: i64 = extend("missing").query_async(&mut con).await.unwrap();
    assert_eq!(t, -2);
}
