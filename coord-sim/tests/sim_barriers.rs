//! Barrier scenarios under the simulator, each swept over 200 seeds, one
//! child process per seed (see `tests/sim.rs` for the environment
//! variables; a failure prints its seed and replay command).
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

fn is_child() -> bool {
    std::env::var_os("COORD_SIM_CHILD").is_some()
}

fn sweep_clean(s: Scenario, test: &str) -> scenario::Sweep {
    let out = scenario::sweep(&s, seeds_from_env(), test);
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if !is_child() {
        let b = &out.barriers;
        assert!(b.trips > 0 && b.tripped > 0, "no generation ever tripped");
        assert!(b.breaks > 0 && b.broken > 0, "no generation ever broke");
    }
    out
}

#[test]
fn barrier_faults() {
    sweep_clean(Scenario::barrier_faults(), "barrier_faults");
}

#[test]
fn barrier_server_restarts() {
    sweep_clean(
        Scenario::barrier_server_restarts(),
        "barrier_server_restarts",
    );
}

#[test]
fn double_barrier_faults() {
    sweep_clean(Scenario::double_barrier_faults(), "double_barrier_faults");
}

/// Every notification lost: waiters still return within their renewal
/// period of a trip (checker `barrier-wake`).
#[test]
fn barrier_notifications_lost() {
    let s = Scenario::barrier_notifications_lost();
    let out = scenario::sweep(&s, seeds_from_env(), "barrier_notifications_lost");
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if !is_child() {
        assert!(out.barriers.tripped > 0, "no generation ever tripped");
    }
}

/// The countdown latch under faults: never open early, each participant
/// counted once per generation, the count kept, no wait past its deadline
/// by more than the bound, generations increasing, an open after the heal
/// (checkers `latch-*`, `liveness`).
#[test]
fn latch_faults() {
    let s = Scenario::latch_faults();
    let out = scenario::sweep(&s, seeds_from_env(), "latch_faults");
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if !is_child() {
        let b = &out.barriers;
        assert!(b.trips > 0 && b.tripped > 0, "no generation ever opened");
    }
}
