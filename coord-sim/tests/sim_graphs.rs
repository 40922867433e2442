//! Job graphs under the simulator, swept over 200 seeds (one child process
//! per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow the
//! sweep, see `tests/sim.rs`): workers crash at every step boundary, are
//! partitioned and paused past their lease; once the faults heal every run
//! ends, no node stranded, each completed at most once and only by its
//! latest attempt, none started before its upstream edges held, final
//! states as the edges say (checkers `graph-*`, `fencing`).
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
        let g = &out.graphs;
        assert!(g.runs > 0 && g.succeeded > 0, "no node ever succeeded");
        assert!(g.crashes > 0, "no worker ever crashed");
    }
    out
}

#[test]
fn graph_faults() {
    let out = sweep_clean(Scenario::graph_faults(), "graph_faults");
    if !is_child() && out.seeds >= 50 {
        let g = &out.graphs;
        // Every kind of step boundary was crashed at, and the edge
        // semantics had something to judge.
        assert_eq!(
            g.boundaries.count_ones(),
            6,
            "boundaries {:b}",
            g.boundaries
        );
        assert!(g.failed > 0 && g.skipped > 0 && g.cancelled > 0, "{g:?}");
        assert!(g.stale > 0, "no stale completion was ever refused");
    }
}

#[test]
fn graph_notifications_lost() {
    sweep_clean(
        Scenario::graph_notifications_lost(),
        "graph_notifications_lost",
    );
}
