//! Work queues under the simulator, swept over 200 seeds (one child
//! process per seed; `MADSIM_TEST_SEED` / `MADSIM_TEST_NUM` move or narrow
//! the sweep, see `tests/sim.rs`): producers and consumers crash at every
//! step boundary, are partitioned and paused past their presence and their
//! lease; the server's answers follow the SPI's rules step by step, every
//! acknowledged push ends acked or dead once the queue drains, no item is
//! acked twice, every second handler start of an item follows an ended
//! lease or a nack, only unstarted deliveries are stolen, dead consumers'
//! deliveries come back when their presence ends, writes are fenced
//! (checkers `queue-*`, `fencing`). With server restarts (an empty store),
//! tokens keep increasing and no delivery from before a restart settles
//! after it.
//!
//! Known client bugs would be counted rather than failed (see
//! `scenario::KNOWN_CLIENT_BUGS`, empty now); a sweep fails once an
//! exempted bug no longer shows, so that the exemption goes with it.
#![cfg(madsim)]

use coord_sim::scenario::{self, KNOWN_CLIENT_BUGS, Scenario, seeds_from_env};

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
        let q = &out.queues;
        assert!(q.pushed > 0 && q.acked > 0, "nothing was pushed and acked");
        assert!(q.crashes > 0, "no process ever crashed");
        if out.seeds >= 50 && KNOWN_CLIENT_BUGS.contains(&"queue-leave") {
            assert!(
                q.unasked_leaves > 0,
                "no consumer left by itself any more: remove \"queue-leave\" from KNOWN_CLIENT_BUGS (coord-sim/src/sim/scenario/queues.rs)"
            );
        }
    }
    out
}

#[test]
fn queue_faults() {
    let out = sweep_clean(Scenario::queue_faults(), "queue_faults");
    if !is_child() && out.seeds >= 50 {
        let q = &out.queues;
        // Every kind of step boundary was crashed at, and every rule had
        // something to judge.
        assert_eq!(
            q.boundaries.count_ones(),
            9,
            "boundaries {:b}",
            q.boundaries
        );
        assert!(
            q.deduplicated > 0 && q.stolen > 0 && q.nacked > 0 && q.dead > 0,
            "{q:?}"
        );
        assert!(
            q.expired > 0 && q.reclaimed_early > 0 && q.stale > 0,
            "{q:?}"
        );
        assert!(
            q.duplicates > 0,
            "no duplicate ever followed an ended lease"
        );
        assert!(
            out.stale_writes_refused > 0,
            "fencing never refused a write"
        );
    }
}

#[test]
fn queue_server_restarts() {
    let out = sweep_clean(Scenario::queue_server_restarts(), "queue_server_restarts");
    if !is_child() && out.seeds >= 50 {
        assert!(
            out.queues.lost_to_restarts > 0,
            "no restart ever lost an item"
        );
    }
}
