//! Circuit breakers under the simulator, swept over 200 seeds (one child
//! process per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow
//! the sweep, see `tests/sim.rs`): twenty instances, their clocks skewed and
//! drifting, call a downstream that fails in phases through one shared
//! breaker; instances are killed (restarted at the heal), paused and
//! partitioned; packets are lost and delayed; after the heal the breaker
//! opens by its window and is then forced open. Checkers `breaker-*`: never
//! more live trials than allowed per generation nor more counted, no trial
//! call without a grant, every instance stops admitting within the bound of
//! an open once healed, and every process is told each transition in order
//! (or that it missed some) and the last one by the end; the same again with
//! every instance's notifications lost.
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

fn is_child() -> bool {
    std::env::var_os("COORD_SIM_CHILD").is_some()
}

fn sweep_clean(s: Scenario, test: &str) {
    let out = scenario::sweep(&s, seeds_from_env(), test);
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if !is_child() {
        // The backend made transitions (`grants`) and calls were admitted
        // (`writes`).
        assert!(out.grants > 0 && out.writes > 0, "{out}");
    }
}

#[test]
fn breaker_faults() {
    sweep_clean(Scenario::breaker_faults(), "breaker_faults");
}

/// Every instance's notifications lost: opens travel by refresh alone.
#[test]
fn breaker_lost_notifications() {
    sweep_clean(
        Scenario::breaker_lost_notifications(),
        "breaker_lost_notifications",
    );
}
