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
        let (replica, old_node) = (self.replica_of(old), self.node(old));
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

    /// The node serving on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        (self.nodes.iter())
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// The replica of the master on `master` (the first node that says it
    /// replicates it).
    pub fn replica_of(&self, master: u16) -> &RedisServer {
        (self.nodes.iter())
            .find(|n| master_port(n) == Some(master))
            .unwrap_or_else(|| panic!("no replica of {master}; {}", self.logs()))
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, asked of a live master).
    pub fn slot_of(&self, key: &str) -> u16 {
        let master = self.masters().into_iter().next().expect("a live master");
        match master.command(&["CLUSTER", "KEYSLOT", key]) {
            Ok(redis::Value::Int(slot)) => u16::try_from(slot).expect("a slot below 16384"),
            other => panic!("CLUSTER KEYSLOT {key:?} answered {other:?}"),
        }
    }

    /// Moves `slot` from its master to the master `to`, as `redis-cli
    /// --cluster reshard` does, with a pause between the start of the
    /// migration and the moving of its keys: for `ask_window`, requests for
    /// keys the old master lacks are answered `ASK` (and scripts over keys
    /// it has only some of, `TRYAGAIN`). Then every key is `MIGRATE`d and
    /// the slot assigned to `to` on every master. Panics naming the step
    /// that failed.
    pub fn move_slot(&self, slot: u16, to: &RedisServer, ask_window: Duration) {
        let slot_arg = slot.to_string();
        let from = (self.masters().into_iter())
            .find(|m| owns(m, slot))
            .unwrap_or_else(|| panic!("no master owns slot {slot}; {}", self.logs()));
        assert_ne!(
            from.port(),
            to.port(),
            "slot {slot} is already on {}",
            to.port()
        );
        let (from_id, to_id) = (node_id(from), node_id(to));
        let step = |node: &RedisServer, args: &[&str]| {
            node.command(args)
                .unwrap_or_else(|e| panic!("{args:?} on {}: {e}; {}", node.port(), self.logs()));
        };
        step(
            to,
            &["CLUSTER", "SETSLOT", &slot_arg, "IMPORTING", &from_id],
        );
        step(
            from,
            &["CLUSTER", "SETSLOT", &slot_arg, "MIGRATING", &to_id],
        );
        std::thread::sleep(ask_window);
        let to_port = to.port().to_string();
        loop {
            let keys = match from.command(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"]) {
                Ok(redis::Value::Array(keys)) => keys,
                other => panic!("GETKEYSINSLOT {slot} answered {other:?}"),
            };
            if keys.is_empty() {
                break;
            }
            let keys: Vec<String> = (keys.into_iter())
                .filter_map(|k| match k {
                    redis::Value::BulkString(b) => String::from_utf8(b).ok(),
                    _ => None,
                })
                .collect();
            let mut args = vec!["MIGRATE", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
            args.extend(keys.iter().map(String::as_str));
            step(from, &args);
        }
        // The new owner first, then the old one (which then stops
        // answering ASK), then the others (gossip would tell them too).
        step(to, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        step(from, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        for m in self.masters() {
            if m.port() != from.port() && m.port() != to.port() {
                step(m, &["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
            }
        }
    }

    /// SIGKILLs the master on `port` and waits until its replica has been
    /// promoted ([`wait_until_promoted`](Self::wait_until_promoted));
    /// returns the promoted replica's port.
    pub fn kill_master(&self, port: u16) -> u16 {
        let replica = self.replica_of(port).port();
        self.node(port).stop();
        self.wait_until_promoted(replica);
        replica
    }

    /// Waits until the replica on `port` says it is master and every live
    /// node says `cluster_state:ok` (the cluster's own failure detection
    /// promotes a replica of a dead master after `cluster-node-timeout`,
    /// 5 s here). Panics after [`FORM_TIMEOUT`].
    pub fn wait_until_promoted(&self, port: u16) {
        let replica = self.node(port);
        poll_until(
            FORM_TIMEOUT,
            &format!("the replica {port} was not promoted"),
            || self.logs(),
            || {
                role(replica).as_deref() == Some("master")
                    && (self.nodes.iter())
                        .filter(|n| n.is_running())
                        .all(|n| cluster_info(n).contains("cluster_state:ok"))
            },
        );
    }

    /// Waits until the replica of the master on `port` has everything the
    /// master had written when this was called (its replication offset
    /// reached the master's). Panics after [`FORM_TIMEOUT`].
    pub fn wait_until_replicated(&self, port: u16) {
        let offset = |node: &RedisServer, field: &str| {
            info_field(node, "replication", field).and_then(|o| o.parse::<u64>().ok())
        };
        let wanted = offset(self.node(port), "master_repl_offset")
            .unwrap_or_else(|| panic!("no replication offset on {port}"));
        let replica = self.replica_of(port);
        poll_until(
            FORM_TIMEOUT,
            &format!("the replica of {port} did not catch up"),
            || self.logs(),
            || offset(replica, "slave_repl_offset").is_some_and(|o| o >= wanted),
        );
    }

    /// Starts a [`killed`](Self::kill_master) node again with its cluster
    /// configuration (not its data: no persistence), and waits until it has
    /// rejoined as a replica in sync. Panics after [`FORM_TIMEOUT`].
    pub fn rejoin(&self, port: u16) {
        let node = self.node(port);
        node.restart();
        poll_until(
            FORM_TIMEOUT,
            &format!("the restarted node {port} did not rejoin as a replica"),
            || self.logs(),
            || role(node).as_deref() == Some("slave") && link_up(node),
        );
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

/// `CLUSTER MYID` of `node`.
fn node_id(node: &RedisServer) -> String {
    text_reply(node, &["CLUSTER", "MYID"])
        .unwrap_or_else(|| panic!("CLUSTER MYID on {} did not answer", node.port()))
}

/// Whether `node` says (in its own `CLUSTER SLOTS`) that it serves `slot`.
fn owns(node: &RedisServer, slot: u16) -> bool {
    let Ok(redis::Value::Array(ranges)) = node.command(&["CLUSTER", "SLOTS"]) else {
        return false;
    };
    ranges.iter().any(|r| match r {
        redis::Value::Array(r) => match (r.first(), r.get(1), r.get(2)) {
            (
                Some(redis::Value::Int(lo)),
                Some(redis::Value::Int(hi)),
                Some(redis::Value::Array(master)),
            ) => {
                (*lo..=*hi).contains(&i64::from(slot))
                    && matches!(master.get(1), Some(redis::Value::Int(p)) if *p == i64::from(node.port()))
            }
            _ => false,
        },
        _ => false,
    })
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
