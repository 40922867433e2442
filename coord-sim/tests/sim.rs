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
