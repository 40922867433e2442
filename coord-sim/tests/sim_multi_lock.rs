//! Multi-locks under the simulator, each scenario swept over 200 seeds (one
//! child process per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or
//! narrow the sweep, see `tests/sim.rs`): workers take overlapping sets of
//! 2 or 3 of five keys in random orders (half in one backend step, half one
//! lock at a time) under partitions, packet loss, latency, killed and
//! paused holders (and, in the second, server restarts). Per key: fencing,
//! tokens, no two believers at once (without restarts); after the heal a
//! prober gets every key at once within the liveness bound.
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
fn multi_lock_partitions() {
    sweep_clean(Scenario::multi_lock_partitions(), "multi_lock_partitions");
}

#[test]
fn multi_lock_server_restarts() {
    sweep_clean(
        Scenario::multi_lock_server_restarts(),
        "multi_lock_server_restarts",
    );
}
