//! Public behaviour of `nexus_cache::singleflight::Group`.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use nexus_cache::singleflight::{Group, SingleflightError};
use tokio::time::{sleep, timeout};

const BOUND: Duration = Duration::from_secs(30);

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_execution() {
    let group: Group<String, u64> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (group, runs) = (group.clone(), Arc::clone(&runs));
        tasks.push(tokio::spawn(async move {
            group
                .run("product:1".to_owned(), || async move {
                    runs.fetch_add(1, SeqCst);
                    sleep(Duration::from_millis(100)).await;
                    7
                })
                .await
        }));
    }
    let mut shared = 0;
    for t in tasks {
        let out = timeout(BOUND, t).await.unwrap().unwrap().unwrap();
        assert_eq!(out.value, 7);
        shared += usize::from(out.shared);
    }
    assert_eq!(runs.load(SeqCst), 1, "the work ran more than once");
    assert_eq!(shared, 99);
    let stats = group.stats();
    assert_eq!((stats.executions, stats.shared), (1, 99));
    assert_eq!(
        group.in_flight(),
        0,
        "entries must not outlive their flight"
    );
}

#[tokio::test(start_paused = true)]
async fn different_keys_do_not_share() {
    let group: Group<u32, u32> = Group::new();
    let (a, b) = tokio::join!(
        group.run(1, || async {
            sleep(Duration::from_millis(10)).await;
            1
        }),
        group.run(2, || async {
            sleep(Duration::from_millis(10)).await;
            2
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.value, a.shared, b.value, b.shared), (1, false, 2, false));
}

#[tokio::test(start_paused = true)]
async fn cancelled_leader_is_taken_over_by_a_follower() {
    let group: Group<&'static str, &'static str> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));

    let leader = {
        let (group, runs) = (group.clone(), Arc::clone(&runs));
        tokio::spawn(async move {
            group
                .run("k", || async move {
                    runs.fetch_add(1, SeqCst);
                    sleep(Duration::from_secs(3600)).await;
                    "from the leader"
                })
                .await
        })
    };
    sleep(Duration::from_millis(10)).await;
    assert_eq!(group.in_flight(), 1);

    let mut followers = Vec::new();
    for _ in 0..10 {
        let (group, runs) = (group.clone(), Arc::clone(&runs));
        followers.push(tokio::spawn(async move {
            group
                .run("k", || async move {
                    runs.fetch_add(1, SeqCst);
                    sleep(Duration::from_millis(50)).await;
                    "from a follower"
                })
                .await
        }));
    }
    sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());

    let mut leaders = 0;
    for f in followers {
        let out = timeout(BOUND, f)
            .await
            .expect("a follower hung")
            .unwrap()
            .unwrap();
        assert_eq!(out.value, "from a follower");
        leaders += usize::from(!out.shared);
    }
    assert_eq!(leaders, 1, "exactly one follower takes over");
    assert_eq!(runs.load(SeqCst), 2, "the original run plus one takeover");
    assert_eq!(group.stats().takeovers, 1);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn leader_dropped_by_timeout_releases_followers() {
    let group: Group<u8, u8> = Group::new();
    let g = group.clone();
    let follower = tokio::spawn(async move {
        sleep(Duration::from_millis(1)).await;
        g.run(0, || async { 2 }).await
    });
    let led = timeout(
        Duration::from_millis(20),
        group.run(0, || async {
            sleep(Duration::from_secs(60)).await;
            1
        }),
    )
    .await;
    assert!(led.is_err(), "the leader should have timed out");
    let out = timeout(BOUND, follower).await.unwrap().unwrap().unwrap();
    assert_eq!((out.value, out.shared), (2, false));
}

#[tokio::test(start_paused = true)]
async fn invalidate_makes_later_calls_start_a_new_flight() {
    let group: Group<&'static str, &'static str> = Group::new();

    let before = {
        let g = group.clone();
        tokio::spawn(async move {
            g.run("k", || async {
                sleep(Duration::from_millis(100)).await;
                "before the write"
            })
            .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    let joined_before = {
        let g = group.clone();
        tokio::spawn(async move { g.run("k", || async { unreachable!() }).await })
    };
    sleep(Duration::from_millis(1)).await;

    // A write to "k" completes here.
    assert!(group.invalidate("k"));
    assert!(!group.invalidate("k"), "nothing left to detach");

    let after = {
        let g = group.clone();
        tokio::spawn(async move {
            g.run("k", || async {
                sleep(Duration::from_millis(200)).await;
                "after the write"
            })
            .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    let joined_after = {
        let g = group.clone();
        tokio::spawn(async move { g.run("k", || async { unreachable!() }).await })
    };

    let b = before.await.unwrap().unwrap();
    assert_eq!((b.value, b.shared), ("before the write", false));
    // The old leader finishing must not detach the new flight.
    assert_eq!(group.in_flight(), 1);
    let jb = joined_before.await.unwrap().unwrap();
    assert_eq!((jb.value, jb.shared), ("before the write", true));
    let a = after.await.unwrap().unwrap();
    assert_eq!((a.value, a.shared), ("after the write", false));
    let ja = joined_after.await.unwrap().unwrap();
    assert_eq!((ja.value, ja.shared), ("after the write", true));
    assert_eq!(group.stats().invalidations, 1);
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn panic_in_the_work_gives_followers_an_error() {
    let group: Group<u8, u8> = Group::new();
    let leader = {
        let g = group.clone();
        tokio::spawn(async move {
            g.run(1, || async {
                sleep(Duration::from_millis(50)).await;
                panic!("work failed");
            })
            .await
        })
    };
    sleep(Duration::from_millis(1)).await;
    let mut followers = Vec::new();
    for _ in 0..5 {
        let g = group.clone();
        followers.push(tokio::spawn(async move { g.run(1, || async { 9 }).await }));
    }
    let err = leader.await.unwrap_err();
    assert!(err.is_panic(), "the panic goes to the leader's caller");
    for f in followers {
        let res = timeout(BOUND, f).await.unwrap().unwrap();
        assert_eq!(res, Err(SingleflightError::LeaderPanicked));
    }
    assert_eq!(group.stats().panics, 1);
    assert_eq!(group.in_flight(), 0);
    // The group still works afterwards.
    assert_eq!(group.run(1, || async { 3 }).await.unwrap().value, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_threads_many_keys_never_hang() {
    let group: Group<u64, u64> = Group::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..2000u64 {
        let (g, runs) = (group.clone(), Arc::clone(&runs));
        tasks.push(tokio::spawn(async move {
            let key = i % 16;
            let out = g
                .run(key, || async move {
                    runs.fetch_add(1, SeqCst);
                    tokio::task::yield_now().await;
                    key * 10
                })
                .await
                .unwrap();
            assert_eq!(out.value, key * 10);
        }));
    }
    for t in tasks {
        timeout(BOUND, t).await.unwrap().unwrap();
    }
    let stats = group.stats();
    assert_eq!(stats.executions + stats.shared, 2000);
    assert_eq!(stats.executions as usize, runs.load(SeqCst));
    assert_eq!(group.in_flight(), 0);
}
