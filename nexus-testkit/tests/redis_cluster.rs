//! RedisCluster: real cluster-enabled redis-server nodes, checked with redis-cli.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use nexus_testkit::{Error, RedisCluster};

#[tokio::test]
async fn three_masters_serve_all_slots_and_redirect() {
    let cluster = RedisCluster::start().await.unwrap();
    assert_eq!(cluster.nodes().len(), 3);
    let node = &cluster.nodes()[0];
    let info = node.cli(["CLUSTER", "INFO"]).await.unwrap();
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    assert!(info.contains("cluster_known_nodes:3"), "{info}");

    // Without -c, a node that does not own the slot answers MOVED; some key
    // among a handful must live elsewhere than node 0.
    let mut moved = 0;
    for i in 0..20 {
        let reply = node.cli(["SET", &format!("key-{i}"), "v"]).await.unwrap();
        if reply.starts_with("MOVED") {
            moved += 1;
        } else {
            assert_eq!(reply, "OK");
        }
    }
    assert!(moved > 0 && moved < 20, "{moved} of 20 moved");
}

#[tokio::test]
async fn a_restarted_node_rejoins() {
    let cluster = RedisCluster::start().await.unwrap();
    let node = &cluster.nodes()[1];
    node.stop();
    node.restart().await.unwrap();
    cluster
        .wait_converged(Duration::from_secs(30))
        .await
        .unwrap();
    let info = node.cli(["CLUSTER", "INFO"]).await.unwrap();
    assert!(info.contains("cluster_known_nodes:3"), "{info}");
}

#[tokio::test]
async fn fewer_than_three_masters_is_rejected() {
    let err = RedisCluster::builder()
        .masters(2)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidOption {
                option: "masters",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn replicas_are_attached_to_masters() {
    let cluster = RedisCluster::builder().replicas(1).start().await.unwrap();
    assert_eq!(cluster.nodes().len(), 6);
    let mut roles = Vec::new();
    for node in cluster.nodes() {
        let role = node.cli(["ROLE"]).await.unwrap();
        roles.push(role.lines().next().unwrap().to_owned());
    }
    assert_eq!(
        roles.iter().filter(|r| *r == "master").count(),
        3,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| *r == "slave").count(),
        3,
        "{roles:?}"
    );
}
