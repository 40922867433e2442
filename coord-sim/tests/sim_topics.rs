//! Topics under the simulator, swept over 200 seeds (one child process per
//! seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow the sweep,
//! see `tests/sim.rs`): publishers publish durable events while
//! subscribers of two subscriptions are killed and come back, partitioned,
//! paused past their presence; half the seeds trim the stream (retention of
//! six events). Every event whose publish returned `Ok` is acked,
//! dead-lettered (refused) or reported missed for each subscription once
//! drained, settlements are fenced, tokens increase, values are as
//! published (checkers `topic-*`). With server restarts (an empty store),
//! tokens keep increasing and the rules hold after the last restart.
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
        // The topic run reports deliveries as grants, accepted acks as
        // writes and refused settlements as stale writes.
        assert!(
            out.grants > 0 && out.writes > 0,
            "nothing was delivered and acked"
        );
    }
    out
}

#[test]
fn topic_faults() {
    let out = sweep_clean(Scenario::topic_faults(), "topic_faults");
    if !is_child() && out.seeds >= 50 {
        assert!(
            out.stale_writes_refused > 0,
            "no stale settlement was ever refused"
        );
        // The give-back checker (topic-give-back) judged something.
        assert!(
            out.topics.given_back > 0,
            "no read whose answer never came gave anything back"
        );
    }
}

#[test]
fn topic_server_restarts() {
    sweep_clean(Scenario::topic_server_restarts(), "topic_server_restarts");
}
