//! Shared values under the simulator, swept over 200 seeds (one child
//! process per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow
//! the sweep, see `tests/sim.rs`): four clients increment one counter
//! through `State::update` while two watchers watch it, and write a flag
//! (puts with a TTL, compare-and-sets, deletes) that a third watches;
//! clients and watchers crash (watchers resume from their checkpoints),
//! are partitioned and paused; packets are lost and delayed; with server
//! restarts the store loses everything. Checkers `state-*`: no acknowledged
//! update lost (without restarts the counter ends exact), versions never
//! repeat and keep increasing across restarts, every watcher sees every
//! change in order or a gap with the state (never a silent skip), and
//! catches up with the final state after the heal; `state-flag-*`: the
//! flag's watcher skips no acknowledged write without a gap, sees each as
//! written, an expiry only of a value put with a TTL, and ends at the
//! final value.
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
        // Updates were acknowledged (`grants`) and watchers handed events
        // (`writes`).
        assert!(out.grants > 0 && out.writes > 0, "{out}");
    }
    out
}

#[test]
fn state_faults() {
    sweep_clean(Scenario::state_faults(), "state_faults");
}

#[test]
fn state_server_restarts() {
    sweep_clean(Scenario::state_server_restarts(), "state_server_restarts");
}
