//! The examples' logic, run on `memory://` so that an example cannot rot
//! silently: each example's `run(url)` returns what it saw, checked here.
//! (`cargo test` also builds every example as the program it is.)

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/barrier.rs"]
mod barrier;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/pipeline.rs"]
mod pipeline;

use barrier::Round;
use coord::{NodeState, RunState};

fn sorted(v: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = v.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barrier_example_reports_the_crash_and_goes_on_without_it() {
    let summary = barrier::run("memory://?namespace=example-barrier")
        .await
        .expect("the example runs");
    assert_eq!(summary.killed, "w-4");
    let rounds = &summary.rounds;
    assert_eq!(rounds.len(), 4, "{rounds:#?}");
    match &rounds[0] {
        Round::Tripped { arrivals, by, .. } => {
            assert_eq!(sorted(arrivals), ["w-1", "w-2", "w-3", "w-4"]);
            assert_eq!(arrivals.last(), Some(by), "the last arrival trips");
        }
        other => panic!("round 1 should trip with everyone: {other:?}"),
    }
    // The dead worker's arrival expired before the slow one arrived: the
    // round broke at the deadline instead of tripping with a dead party.
    match &rounds[1] {
        Round::Broken {
            reason,
            missing,
            arrived,
            expired,
            ..
        } => {
            assert!(reason.starts_with("timeout of"), "{reason}");
            assert_eq!(*missing, 1);
            assert_eq!(sorted(arrived), ["w-1", "w-2", "w-3"]);
            assert_eq!(expired, &["w-4"]);
        }
        other => panic!("round 2 should break naming w-4: {other:?}"),
    }
    for (i, round) in rounds[2..].iter().enumerate() {
        match round {
            Round::Tripped { arrivals, .. } => {
                assert_eq!(sorted(arrivals), ["w-1", "w-2", "w-3"], "round {}", i + 3)
            }
            other => panic!("round {} should trip with the three left: {other:?}", i + 3),
        }
    }
    let generations: Vec<u64> = rounds
        .iter()
        .map(|r| match r {
            Round::Tripped { generation, .. } | Round::Broken { generation, .. } => *generation,
        })
        .collect();
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "generations increase: {generations:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_example_completes_after_a_worker_is_killed_mid_transform() {
    let summary = pipeline::run("memory://?namespace=example-pipeline")
        .await
        .expect("the example runs");
    let names: Vec<&str> = summary.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(
        names,
        [
            "extract",
            "transform-a",
            "transform-b",
            "transform-c",
            "load"
        ]
    );
    assert_eq!(summary.state, RunState::Succeeded, "{summary:#?}");
    for n in &summary.nodes {
        assert_eq!(n.state, NodeState::Succeeded, "{n:?}");
        assert!(
            ["worker-1", "worker-2", "worker-3"].contains(&n.worker.as_str()),
            "{n:?}"
        );
        assert!(n.token > 0, "{n:?}");
    }
    // The killed worker's transform: attempt 1 died with its worker, its
    // lease expired, and another worker ran attempt 2 with a larger token.
    assert!(
        summary.killed_node.starts_with("transform-"),
        "{summary:#?}"
    );
    let killed = (summary.nodes.iter())
        .find(|n| n.node == summary.killed_node)
        .expect("the killed node is in the table");
    assert_eq!(killed.attempts, 2, "{summary:#?}");
    assert_ne!(killed.worker, summary.killed, "{summary:#?}");
    assert!(killed.token > summary.killed_token, "{summary:#?}");
    assert!(
        summary.nodes.iter().filter(|n| n.attempts >= 2).count() >= 1,
        "{summary:#?}"
    );
    // No node ran twice but the killed one.
    for n in summary
        .nodes
        .iter()
        .filter(|n| n.node != summary.killed_node)
    {
        assert_eq!(n.attempts, 1, "{n:?}");
    }
    // load read the three shards in the transforms' declaration order.
    assert_eq!(summary.load, pipeline::expected_load());
}
