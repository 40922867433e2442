//! The examples' logic, run on `memory://` so that an example cannot rot
//! silently: each example's `run(url)` returns what it saw, checked here.
//! (`cargo test` also builds every example as the program it is.)

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/barrier.rs"]
mod barrier;

use barrier::Round;

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
