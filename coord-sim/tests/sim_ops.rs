//! Operations under the simulator, swept over 200 seeds (one child process
//! per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow the
//! sweep, see `tests/sim.rs`): eight holders keep an instance presence and
//! fixed leases (a lock, a read lease, a queue item's delivery) while some
//! are killed for good, paused or cut off from the
//! server; an operator lists every live lease every 250 ms. Checkers
//! `ops-*`: every listing lists exactly the held leases; a holder gone for
//! longer than its presence TTL has every lease listed stale; a holder up
//! for a renewal's worth has none.
#![cfg(madsim)]

use coord_sim::scenario::{self, Scenario, seeds_from_env};

#[test]
fn ops_stale() {
    let s = Scenario::ops_stale();
    let out = scenario::sweep(&s, seeds_from_env(), "ops_stale");
    println!("{}: {out}", s.name);
    assert!(
        out.failures.is_empty(),
        "{}: failing seeds {:?}",
        s.name,
        out.failures.iter().map(|f| f.0).collect::<Vec<_>>()
    );
    if std::env::var_os("COORD_SIM_CHILD").is_none() {
        // Listings judged a holder that had to be stale (`grants`) and one
        // that had to be alive (`writes`).
        assert!(out.grants > 0 && out.writes > 0, "{out}");
    }
}
