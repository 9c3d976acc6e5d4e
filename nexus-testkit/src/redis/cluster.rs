//! [`RedisCluster`]: several `redis-server` nodes joined into a Redis Cluster.

use std::{
    net::SocketAddr,
    process::Command,
    time::{Duration, Instant},
};

use super::RedisServer;
use crate::{Error, Result, binary::REDIS_CLI, process::free_port};

/// Redis Cluster needs at least this many masters.
const MIN_MASTERS: usize = 3;

/// Bound on the whole `redis-cli --cluster create` run.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between two `CLUSTER INFO` rounds.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Bound on waiting for every node to report `cluster_state:ok`.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds a [`RedisCluster`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisClusterBuilder {
    masters: usize,
    replicas: usize,
    node_timeout: Duration,
}

impl RedisClusterBuilder {
    /// Number of masters, at least 3 (default 3).
    pub fn masters(mut self, masters: usize) -> Self {
        self.masters = masters;
        self
    }

    /// Replicas per master (default 0).
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// `cluster-node-timeout`: how long a node may be unreachable before it
    /// is failed over (default 2 s, short so that failover tests are quick).
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Starts the nodes, assigns the 16384 slots with `redis-cli --cluster
    /// create`, and waits until every node reports `cluster_state:ok`.
    pub async fn start(self) -> Result<RedisCluster> {
        if self.masters < MIN_MASTERS {
            return Err(Error::InvalidOption {
                option: "masters",
                reason: format!("Redis Cluster needs at least {MIN_MASTERS} masters"),
            });
        }
        let total = self.masters * (1 + self.replicas);
        let mut nodes = Vec::with_capacity(total);
        for _ in 0..total {
            // An explicit bus port: the default (port + 10000) can exceed 65535
            // for ephemeral ports. Kept across restarts with the rest of the options.
            let bus = free_port()?;
            let node = RedisServer::builder()
                .arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-port")
                .arg(bus.to_string())
                .arg("--cluster-node-timeout")
                .arg(self.node_timeout.as_millis().to_string())
                .arg("--cluster-config-file")
                .arg("nodes.conf")
                .start()
                .await?;
            nodes.push(node);
        }
        let mut create = Command::new(REDIS_CLI.locate()?);
        create.arg("--cluster").arg("create");
        create.args(nodes.iter().map(|node| node.addr().to_string()));
        create
            .arg("--cluster-replicas")
            .arg(self.replicas.to_string())
            .arg("--cluster-yes");
        crate::client::run(create, CREATE_TIMEOUT).await?;
        let cluster = RedisCluster { nodes };
        cluster.wait_converged(CONVERGE_TIMEOUT).await?;
        Ok(cluster)
    }
}

/// A Redis Cluster of [`RedisServer`] nodes on `127.0.0.1`, each in its own
/// temporary directory with its own cluster bus port.
///
/// Every node is an ordinary [`RedisServer`]: [`stop`](RedisServer::stop) one
/// to simulate a crash, [`restart`](RedisServer::restart) it and it rejoins
/// with its `nodes.conf`. Dropping the cluster kills every node.
///
/// ```no_run
/// # async fn demo() -> nexus_testkit::Result<()> {
/// let cluster = nexus_testkit::RedisCluster::start().await?; // 3 masters
/// assert_eq!(cluster.nodes().len(), 3);
/// let seeds: Vec<String> = cluster.urls();
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts a cluster of 3 masters and no replicas.
    pub async fn start() -> Result<Self> {
        Self::builder().start().await
    }

    /// Options for a cluster.
    pub fn builder() -> RedisClusterBuilder {
        RedisClusterBuilder {
            masters: MIN_MASTERS,
            replicas: 0,
            node_timeout: Duration::from_secs(2),
        }
    }

    /// Every node, masters and replicas, in start order.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The address of every node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(RedisServer::addr).collect()
    }

    /// `redis://127.0.0.1:PORT` for every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits (bounded) until every running node reports `cluster_state:ok`.
    pub async fn wait_converged(&self, timeout: Duration) -> Result<()> {
        // Wall clock, like every start-up wait of the kit: a test that pauses
        // tokio's clock must not see this time out early.
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            let mut all_ok = true;
            for node in self.nodes.iter().filter(|node| node.is_running()) {
                let info = node.cli(["CLUSTER", "INFO"]).await?;
                if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    all_ok = false;
                    last = format!("{}: {}", node.addr(), first_line(&info));
                    break;
                }
            }
            if all_ok {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: "redis cluster",
                    addr: self
                        .nodes
                        .first()
                        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), RedisServer::addr),
                    timeout,
                    log: last,
                });
            }
            tokio::task::spawn_blocking(|| std::thread::sleep(POLL_INTERVAL))
                .await
                .map_err(|join| Error::Io(std::io::Error::other(join)))?;
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}
