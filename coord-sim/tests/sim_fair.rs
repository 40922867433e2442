//! Fair locks under the simulator, swept over 200 seeds (one child process
//! per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow the
//! sweep, see `tests/sim.rs`): six workers wait for one fair lock with a
//! 600 ms waiter TTL while some are killed (waiting or holding), paused or
//! cut off. Checkers: `fair-order` (a waiter whose first attempt returned
//! before another's was sent, and that kept its place, is granted first),
//! `tokens` (the server's order and the clients'), `fencing` (the
//! resource), `liveness` after the heal.
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

#[test]
fn fair_lock() {
    let s = Scenario::fair_lock();
    let out = scenario::sweep(&s, seeds_from_env(), "fair_lock");
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if std::env::var_os("COORD_SIM_CHILD").is_none() {
        // Ordered pairs were judged (`grants`) and the resource was written.
        assert!(out.grants > 0 && out.writes > 0, "{out}");
    }
}
