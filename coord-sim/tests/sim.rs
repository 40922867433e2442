//! Fault scenarios under the simulator, each swept over 200 seeds, one child
//! process per seed (set `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` to move or
//! narrow the sweep; a failure prints its seed and the command that replays
//! it; `MADSIM_TEST_CHECK_DETERMINISM=1` runs every seed twice and compares).
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

fn sweep_clean(s: Scenario, test: &str) {
    let out = scenario::sweep(&s, seeds_from_env(), test);
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    assert!(out.grants > 0 && out.writes > 0, "the workload did nothing");
}

#[test]
fn partitions_in_bounds() {
    sweep_clean(Scenario::partitions_in_bounds(), "partitions_in_bounds");
}

#[test]
fn server_restarts() {
    sweep_clean(Scenario::server_restarts(), "server_restarts");
}

#[test]
fn drift_beyond_bounds() {
    sweep_clean(Scenario::drift_beyond_bounds(), "drift_beyond_bounds");
}

/// Several locks at once: workers take overlapping sets of 2 or 3 of five
/// keys in random orders (half in one backend step, half one lock at a
/// time) under partitions, packet loss, latency, killed and paused holders.
/// Per key: fencing, tokens, no two believers at once; after the heal a
/// prober gets every key at once within the liveness bound.
#[test]
fn multi_lock_partitions() {
    sweep_clean(Scenario::multi_lock_partitions(), "multi_lock_partitions");
}

/// [`multi_lock_partitions`] with server restarts too (no belief check:
/// a restart loses leases).
#[test]
fn multi_lock_server_restarts() {
    sweep_clean(
        Scenario::multi_lock_server_restarts(),
        "multi_lock_server_restarts",
    );
}

/// Fair locks: six workers wait for one fair lock with a 600 ms waiter TTL
/// while some are killed (waiting or holding), paused or cut off.
/// Checkers: `fair-order` (a waiter whose first attempt returned before
/// another's was sent, and that kept its place, is granted first),
/// `tokens`, `fencing`, `liveness` after the heal.
#[test]
fn fair_lock() {
    sweep_clean(Scenario::fair_lock(), "fair_lock");
}
