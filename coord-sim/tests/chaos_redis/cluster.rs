//! Chaos on a real Redis Cluster (issue 20, item 2): the same holder
//! processes and fenced resource as the one-server run, over
//! `redis+cluster://` to three masters and three replicas
//! (`coord_testkit::cluster::ClusterSet`), through two faults a cluster has
//! and one server has not:
//!
//! 1. **Moving slots.** The lock's slot is moved from master to master
//!    [`MOVES`] times while the holders contend for it, each move as
//!    `redis-cli --cluster reshard` makes it, with a pause between the start
//!    of the migration and the moving of the keys (the old master answers
//!    `ASK` for the keys it lacks, `TRYAGAIN` for scripts over keys it has
//!    only some of) and the slot's sharded subscriptions ended when it
//!    leaves. What the contract's "Redis Cluster" section promises: no call
//!    returns an error for it (the backend follows `MOVED`, `ASK`,
//!    `TRYAGAIN` within the operation timeout), and every checker holds.
//! 2. **A master killed.** The master serving the lock is SIGKILLed while
//!    the holders contend; its replica is promoted (the cluster's own
//!    failure detection: `cluster-node-timeout` 5 s), and the killed node
//!    then rejoins, empty, as a replica. What the contract's "Failover"
//!    section promises: calls fail only with retryable errors (or a wait
//!    that ends ungranted) until the clients reach the new master; tokens
//!    keep increasing (checker (b), the servers share this machine's
//!    clock); fencing holds (checker (a)); two holders may overlap only
//!    across the failover (checker (c), with the kill as the one instant
//!    that explains an overlap); some holder is granted the lock within
//!    [`LIVENESS`] of the promotion and of the rejoin (checker (d)).
//!
//! The schedule is fixed (no seed): which master the slot moves to next,
//! and the `ASK` windows, cycle through fixed lists.

use std::{sync::Arc, time::Duration};

use coord_sim::{
    chaos::{FenceServer, mono_ns},
    history::check_liveness,
};
use coord_testkit::cluster::ClusterSet;
use tokio::time::sleep;

use super::{Holders, KEY, LIVENESS, assert_none, safety};

/// How many times the lock's slot moves.
const MOVES: usize = 6;
/// How long each move leaves the slot migrating before its keys move
/// (cycled through). The backend sends a `TRYAGAIN`ed request again after
/// pauses doubling from 10 ms to 50 ms, within the holders' operation
/// timeout of 500 ms: each window ends early enough for a try to land
/// after it (a slot left half-moved for longer makes calls `Unavailable`,
/// retryable, as the contract says).
const ASK_WINDOWS: [Duration; 3] = [
    Duration::from_millis(0),
    Duration::from_millis(150),
    Duration::from_millis(350),
];
/// The whole test, start to verdict.
const WHOLE: Duration = Duration::from_secs(150);

/// The Redis key of the holders' lock (namespace `chaos`, see
/// `chaos_holder`).
fn lock_key() -> String {
    format!("coord:{{chaos:lock:{KEY}}}:l")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_moving_and_a_master_killed_under_a_lock_workload() {
    tokio::time::timeout(WHOLE, run())
        .await
        .unwrap_or_else(|_| panic!("the cluster chaos run took longer than {WHOLE:?}"));
}

async fn run() {
    let set = Arc::new(blocking(ClusterSet::start).await);
    let fence = FenceServer::start().await.unwrap();
    let mut holders = Holders::start(set.url(), &fence, Duration::from_secs(20), "cluster").await;

    // 1. The lock's slot moves from master to master.
    let key = lock_key();
    let s = set.clone();
    let k = key.clone();
    let slot = blocking(move || s.slot_of(&k)).await;
    let before = fence.stats();
    let errors_before = fence.errors().len();
    let mut log = Vec::new();
    for i in 0..MOVES {
        let s = set.clone();
        let (k, window) = (key.clone(), ASK_WINDOWS[i % ASK_WINDOWS.len()]);
        let (from, to) = blocking(move || {
            let from = s.master_of(&k).port();
            let masters: Vec<u16> = s.masters().iter().map(|m| m.port()).collect();
            let to =
                masters[(masters.iter().position(|&p| p == from).unwrap() + 1) % masters.len()];
            s.move_slot(slot, s.node(to), window);
            (from, to)
        })
        .await;
        log.push(format!(
            "slot {slot}: {from} -> {to} (ASK window {window:?})"
        ));
        sleep(Duration::from_millis(700)).await;
    }
    let moved = mono_ns();
    let after_moves = fence.grant_after(moved, LIVENESS).await;
    let moving = fence.stats() - before;
    let moving_errors = fence.errors()[errors_before..].to_vec();

    // 2. The master serving the lock is killed; its replica takes over.
    let s = set.clone();
    let k = key.clone();
    let old = blocking(move || s.master_of(&k).port()).await;
    let before = fence.stats();
    let killed = mono_ns();
    let s = set.clone();
    let promoted = blocking(move || s.kill_master(old)).await;
    let promoted_at = mono_ns();
    let after_promotion = fence.grant_after(promoted_at, LIVENESS).await;
    log.push(format!(
        "killed master {old}; replica {promoted} promoted after {:.1}s",
        (promoted_at - killed) as f64 / 1e9
    ));
    let s = set.clone();
    blocking(move || s.rejoin(old)).await;
    let rejoined = mono_ns();
    let after_rejoin = fence.grant_after(rejoined, LIVENESS).await;
    log.push(format!("{old} rejoined as a replica of {promoted}"));
    sleep(Duration::from_secs(1)).await;
    let failing = fence.stats() - before;
    holders.stop().await;

    let stats = fence.stats();
    // Overlaps only the failover explains (a grant the replica lacked).
    let (mut violations, explained) = safety(&fence, &[killed]);
    for (what, at, got) in [
        ("after the slot moves", moved, after_moves),
        ("after the promotion", promoted_at, after_promotion),
        ("after the rejoin", rejoined, after_rejoin),
    ] {
        for mut v in check_liveness(fence.instant(at), got.map(|t| fence.instant(t)), LIVENESS) {
            v.detail = format!("{what}: {}", v.detail);
            violations.push(v);
        }
    }
    println!("chaos_redis cluster:\n  {}", log.join("\n  "));
    println!(
        "chaos_redis cluster: while slots moved {moving:?}; through the failover {failing:?}; whole run {stats:?}; overlapping holds the failover explains: {explained}; violations {}",
        violations.len()
    );
    assert_none("chaos_redis cluster", &violations);
    assert_eq!(
        stats.other_errors,
        0,
        "calls failed with errors that are not retryable: {:?}",
        fence.errors()
    );
    // Waits that end ungranted (`timeouts`) are contention: four holders
    // holding up to 1.5 s each, waiting up to 3 s.
    assert_eq!(
        moving.retryable_errors, 0,
        "moving slots surfaced errors to the holders: {moving:?}: {moving_errors:#?}"
    );
    // Not vacuous: the holders worked through both phases.
    assert!(moving.grants >= 3, "while slots moved: {moving:?}");
    assert!(failing.grants >= 3, "through the failover: {failing:?}");
    assert!(stats.accepted >= 50, "only {} writes", stats.accepted);
}
