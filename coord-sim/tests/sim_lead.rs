//! Leadership and run-once scenarios under the simulator, each swept over
//! 200 seeds, one child process per seed (see `tests/sim.rs` for the
//! environment variables; a failure prints its seed and replay command).
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

fn sweep_clean(s: Scenario, test: &str) -> scenario::Sweep {
    let out = scenario::sweep(&s, seeds_from_env(), test);
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    out
}

fn is_child() -> bool {
    std::env::var_os("COORD_SIM_CHILD").is_some()
}

#[test]
fn leadership_partitions() {
    let out = sweep_clean(Scenario::leadership_partitions(), "leadership_partitions");
    assert!(out.grants > 0 && out.writes > 0, "the workload did nothing");
}

#[test]
fn leadership_drift_beyond() {
    let out = sweep_clean(
        Scenario::leadership_drift_beyond(),
        "leadership_drift_beyond",
    );
    assert!(out.grants > 0 && out.writes > 0, "the workload did nothing");
}

#[test]
fn leader_crash() {
    let out = sweep_clean(Scenario::leader_crash(), "leader_crash");
    if !is_child() {
        let (median, worst) = out.failover_ttls().expect("failovers were measured");
        println!(
            "failover after a leader crash over {} seeds ({} crashes): median {median:.3} TTL, worst {worst:.3} TTL",
            out.seeds,
            out.failovers.len()
        );
    }
}

#[test]
fn run_once_faults() {
    let out = sweep_clean(Scenario::run_once_faults(), "run_once_faults");
    assert!(out.grants > 0 && out.writes > 0, "the workload did nothing");
}
