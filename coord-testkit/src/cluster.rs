//! A Redis Cluster of the test's own ([`ClusterSet`]): three masters and
//! three replicas, every node a [`RedisServer`] on free loopback ports
//! (client port and cluster bus port), joined by
//! `redis-cli --cluster create … --cluster-replicas 1`. The set is returned
//! once every node says `cluster_state:ok` with all 16384 slots assigned
//! and knows all six nodes, and every replica is in sync with its master.
//! Every process is killed when the set drops (or when the test process
//! dies) and its files are removed.
//!
//! ```no_run
//! use coord_testkit::cluster::ClusterSet;
//! let set = ClusterSet::start();
//! let config = set.config("my-test");
//! assert!(config.to_string().starts_with("redis+cluster(127.0.0.1:"));
//! ```

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use coord_redis::RedisConfig;

use crate::redis::{
    RedisServer, free_port, info_field, poll_until, redis_server_binary, role, text_reply,
};

/// Masters in a [`ClusterSet`].
pub const MASTERS: usize = 3;
/// How long the fixture waits for the cluster to form.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a manual failover may take before the replica gives it up.
const MANUAL_FAILOVER: Duration = Duration::from_secs(6);

/// Three masters and three replicas in one Redis Cluster. Killed on drop.
pub struct ClusterSet {
    nodes: Vec<RedisServer>,
}

impl ClusterSet {
    /// Starts six nodes, creates the cluster (one replica per master) and
    /// waits until it is formed. Panics with the logs' last lines otherwise.
    pub fn start() -> ClusterSet {
        let nodes: Vec<RedisServer> = (0..2 * MASTERS)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                    "--cluster-announce-ip",
                    "127.0.0.1",
                ])
            })
            .collect();
        let set = ClusterSet { nodes };
        set.create();
        set.wait_until_formed();
        set
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`: three
    /// of the nodes as seeds.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = (self.nodes.iter().take(MASTERS))
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// A configuration for this cluster in `namespace`, with a 3 s
    /// operation timeout.
    pub fn config(&self, namespace: &str) -> RedisConfig {
        RedisConfig::builder()
            .with_url(self.url())
            .namespace(namespace)
            .timeout(Duration::from_secs(3))
            .build()
            .expect("valid cluster test configuration")
    }

    /// Every node (masters and replicas).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes that say they are masters.
    pub fn masters(&self) -> Vec<&RedisServer> {
        (self.nodes.iter())
            .filter(|n| role(n).as_deref() == Some("master"))
            .collect()
    }

    /// The master serving `key`'s slot (the one that does not answer
    /// `MOVED` to a read of it).
    pub fn master_of(&self, key: &str) -> &RedisServer {
        (self.masters().into_iter())
            .find(|m| m.command(&["EXISTS", key]).is_ok())
            .unwrap_or_else(|| panic!("no master serves {key:?}"))
    }

    /// A planned failover (`CLUSTER FAILOVER` on a replica of the master
    /// serving `key`, which waits until the replica has caught up); returns
    /// once the replica says it is master, with its port. Panics after
    /// [`FORM_TIMEOUT`].
    pub fn fail_over(&self, key: &str) -> u16 {
        let old = self.master_of(key).port();
        let replica = (self.nodes.iter())
            .find(|n| master_port(n) == Some(old))
            .unwrap_or_else(|| panic!("no replica of {old}; {}", self.logs()));
        let old_node = (self.nodes.iter())
            .find(|n| n.port() == old)
            .expect("a node");
        // A manual failover gives up after 5 s (the master did not pause in
        // time): asked again then.
        let mut asked = Instant::now() - MANUAL_FAILOVER;
        let failed = format!("no failover of {old}");
        poll_until(
            FORM_TIMEOUT,
            &failed,
            || self.logs(),
            || {
                if role(replica).as_deref() == Some("master")
                    && role(old_node).as_deref() == Some("slave")
                {
                    return true;
                }
                if asked.elapsed() >= MANUAL_FAILOVER {
                    replica
                        .command(&["CLUSTER", "FAILOVER"])
                        .expect("CLUSTER FAILOVER on a replica");
                    asked = Instant::now();
                }
                false
            },
        );
        replica.port()
    }

    fn create(&self) {
        let mut cmd = Command::new(redis_cli_binary());
        cmd.args(["--cluster", "create"]);
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port()));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null());
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli --cluster create: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}): {}{}; {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    fn wait_until_formed(&self) {
        let formed = || {
            self.nodes.iter().all(|n| {
                let info = cluster_info(n);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_assigned:16384")
                    && info.contains(&format!("cluster_known_nodes:{}", 2 * MASTERS))
            }) && self.masters().len() == MASTERS
                && (self.nodes.iter())
                    .filter(|n| role(n).as_deref() == Some("slave"))
                    .all(link_up)
        };
        poll_until(
            FORM_TIMEOUT,
            "the cluster did not form",
            || self.logs(),
            formed,
        );
    }

    /// The last lines of every node's log, for a failure message.
    pub fn logs(&self) -> String {
        (self.nodes.iter())
            .map(|n| format!("node {}: {}", n.port(), n.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl std::fmt::Debug for ClusterSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSet")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.port()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// `CLUSTER INFO` of `node` (empty if it does not answer).
fn cluster_info(node: &RedisServer) -> String {
    text_reply(node, &["CLUSTER", "INFO"]).unwrap_or_default()
}

/// Whether replica `node` is in sync with its master
/// (`master_link_status:up`).
fn link_up(node: &RedisServer) -> bool {
    info_field(node, "replication", "master_link_status").as_deref() == Some("up")
}

/// The port of the master `node` replicates, if it is a replica.
fn master_port(node: &RedisServer) -> Option<u16> {
    match node.command(&["ROLE"]).ok()? {
        redis::Value::Array(v) if v.len() >= 3 => match (&v[0], &v[2]) {
            (redis::Value::BulkString(r), redis::Value::Int(p)) if r.as_slice() == b"slave" => {
                u16::try_from(*p).ok()
            }
            _ => None,
        },
        _ => None,
    }
}

/// `redis-cli` next to `redis-server`, else from `PATH`.
fn redis_cli_binary() -> PathBuf {
    let beside = redis_server_binary().with_file_name("redis-cli");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("redis-cli")
    }
}
