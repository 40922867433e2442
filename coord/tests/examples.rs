//! The examples' logic, run on `memory://` so that an example cannot rot
//! silently: each example's `run(url)` returns what it saw, checked here.
//! (`cargo test` also builds every example as the program it is.)

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/barrier.rs"]
mod barrier;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/breaker.rs"]
mod breaker;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/config.rs"]
mod config;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/pipeline.rs"]
mod pipeline;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/queue.rs"]
mod queue;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/events.rs"]
mod events;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/metrics.rs"]
mod metrics;

#[allow(dead_code)] // its `main` and argument parsing
#[path = "../examples/transfer.rs"]
mod transfer;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_example_finishes_the_killed_consumers_item_elsewhere() {
    use queue::Settled;

    let s = queue::run("memory://?namespace=example-queue")
        .await
        .expect("the example runs");
    let orders = queue::orders();
    assert_eq!(s.pushed.len(), orders.len(), "{s:#?}");
    let numbers: Vec<u32> = s.pushed.values().copied().collect();
    let expected: Vec<u32> = orders.iter().map(|o| o.no).collect();
    assert_eq!(numbers, expected, "ids follow the push order");

    // The killed consumer's item: attempt 1 there, never settled; attempt 2
    // on another consumer, with a larger token, acked.
    let k = &s.killed_delivery;
    assert_eq!(s.killed, "consumer-3");
    assert_eq!((k.consumer, k.attempt), ("consumer-3", 1), "{k:?}");
    let after = s.settlements(k.id);
    assert_eq!(after.len(), 1, "settled once, after the kill: {after:?}");
    let (d, how) = after[0];
    assert_eq!(*how, Settled::Acked, "{d:?}");
    assert_eq!(d.attempt, 2, "{d:?}");
    assert_ne!(d.consumer, "consumer-3", "{d:?}");
    assert!(
        d.token > k.token,
        "a later delivery has a larger token: {d:?}"
    );
    assert!(
        !s.seen
            .iter()
            .any(|x| x.consumer == "consumer-3" && x.id != k.id),
        "consumer-3 took nothing else"
    );

    // Every item acked or dead-lettered, once; the dead ones as expected.
    let dead_nos: Vec<(u32, &str)> = queue::expected_dead();
    for (&id, &no) in &s.pushed {
        let finals: Vec<&Settled> = (s.settlements(id).into_iter())
            .map(|(_, how)| how)
            .filter(|how| matches!(how, Settled::Acked | Settled::DeadLettered(_)))
            .collect();
        let want = match dead_nos.iter().find(|(n, _)| *n == no) {
            Some((_, reason)) => Settled::DeadLettered((*reason).to_owned()),
            None => Settled::Acked,
        };
        assert_eq!(finals, [&want], "item {id} (order {no})");
    }
    let listed: Vec<(Option<u32>, &str)> =
        (s.dead.iter()).map(|d| (d.no, d.reason.as_str())).collect();
    let want: Vec<(Option<u32>, &str)> = dead_nos.iter().map(|(n, r)| (Some(*n), *r)).collect();
    assert_eq!(listed, want, "{:#?}", s.dead);
    for d in &s.dead {
        let refused = d.reason.starts_with("refused");
        assert_eq!(d.attempts, if refused { 1 } else { 3 }, "{d:?}");
    }

    // The counts: stats() against what the handlers saw.
    let (c, st) = (&s.counts, &s.stats);
    assert!(c.stolen >= 1, "some steals: {c:?}");
    assert!(
        s.seen
            .iter()
            .all(|x| !x.stolen || x.consumer == "consumer-2"),
        "only the stealer steals"
    );
    assert_eq!(st.stolen, c.stolen, "{st:?} {c:?}");
    // A stolen delivery replaced a prefetched one no handler saw.
    assert_eq!(st.delivered, c.delivered + c.stolen, "{st:?} {c:?}");
    // The killed item once, the two flaky orders twice each.
    assert_eq!(c.redelivered, 1 + 2 * 2, "{c:?}");
    assert_eq!(
        st.redelivered,
        c.redelivered + c.stolen_retries,
        "{st:?} {c:?}"
    );
    assert_eq!(c.dead_lettered, dead_nos.len() as u64, "{c:?}");
    assert_eq!(st.dead_lettered, c.dead_lettered, "{st:?}");
    assert_eq!(st.dead, c.dead_lettered, "{st:?}");
    assert_eq!((st.ready, st.delayed, st.in_flight), (0, 0, 0), "{st:?}");
    let acks = (s.settled.iter())
        .filter(|(_, how)| *how == Settled::Acked)
        .count();
    assert_eq!(acks as u64 + c.dead_lettered, s.pushed.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_example_replays_what_the_subscriber_missed_but_not_ephemeral_ticks() {
    let s = events::run("memory://?namespace=example-events")
        .await
        .expect("the example runs");
    assert_eq!(s.before, vec![(1, 1), (2, 2)]);
    assert_eq!(
        s.caught_up,
        vec![(3, 3), (4, 4), (6, 6)],
        "durable: replayed"
    );
    let (offset, reason) = s.refused.expect("version 2 refused");
    assert_eq!(offset, 5);
    assert!(reason.contains("version 2"), "{reason}");
    assert_eq!(
        s.ticks,
        vec![1, 3],
        "ephemeral: tick 2 was missed while down"
    );
    assert_eq!(s.replayed, vec![1, 2, 3, 4, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_example_services_see_every_version_in_order() {
    let s = config::run("memory://?namespace=example-config")
        .await
        .expect("the example runs");
    // Five revisions by the operator and the autoscaler's one.
    assert_eq!(s.written.len(), 6, "{s:?}");
    assert!(s.written.windows(2).all(|w| w[0] < w[1]), "{s:?}");
    assert_eq!(s.conflicts, 1, "the operator lost one race");
    assert_eq!(s.gaps, 0);
    assert_eq!(s.seen.len(), 3);
    for (name, seen, value) in &s.seen {
        assert_eq!(seen, &s.written, "{name}");
        let value = value.as_ref().expect("present");
        assert_eq!((value.revision, value.max_connections), (5, 200), "{name}");
    }
    // The auditor was down for every change and replayed them all, in order,
    // at dense offsets from 1.
    let audited: Vec<u64> = s.audited.iter().map(|(_, e)| e.version).collect();
    assert_eq!(audited, s.written, "the auditor replays every change");
    let offsets: Vec<u64> = s.audited.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (1..=6).collect::<Vec<_>>());
    assert_eq!(
        s.audited
            .iter()
            .filter(|(_, e)| e.by == "autoscaler")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_example_opens_everywhere_one_trial_closes() {
    use coord::spi::Phase::*;
    let s = breaker::run("memory://?namespace=example-breaker")
        .await
        .expect("the example runs");
    assert_eq!(s.saw_open.len(), 4, "open on every instance: {s:?}");
    assert_eq!(s.trials, 1, "one trial call cluster-wide: {s:?}");
    assert_eq!(
        s.saw_closed.len(),
        4,
        "closed again on every instance: {s:?}"
    );
    let seen = [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)];
    assert_eq!(s.transitions, seen, "{s:?}");
}

/// The one test of this binary that installs a process-wide recorder: the
/// other tests' clients may record into it too, so this checks what the
/// example's own actions must have put there, not exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_example_renders_the_lease_metrics_in_prometheus_text() {
    let prometheus = metrics::install().expect("the only recorder of this binary");
    let text = metrics::run("memory://?namespace=example-metrics", &prometheus)
        .await
        .expect("the example runs");
    for line in [
        "# TYPE coord_lock_wait_seconds histogram",
        "# HELP coord_lock_wait_seconds Lock-family acquisitions",
        r#"coord_lock_wait_seconds_bucket{kind="exclusive",outcome="acquired",le="0.001"}"#,
        r#"coord_lock_wait_seconds_count{kind="exclusive",outcome="busy"} "#,
        r#"coord_lock_wait_seconds_count{kind="exclusive",outcome="timeout"} "#,
        r#"coord_lock_wait_seconds_count{kind="read",outcome="acquired"} "#,
        r#"coord_lock_wait_seconds_count{kind="write",outcome="acquired"} "#,
        r#"coord_lock_wait_seconds_count{kind="permit",outcome="acquired"} "#,
        r#"coord_lock_hold_seconds_count{kind="exclusive"} "#,
        r#"coord_lock_contended_total{kind="exclusive"} "#,
        r#"coord_lock_timeouts_total{kind="exclusive"} "#,
        r#"coord_election_campaigns_total{outcome="elected"} "#,
        r#"coord_election_campaigns_total{outcome="busy"} "#,
        "coord_election_terms_total ",
        "coord_leadership_seconds_count ",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    assert!(
        !text.contains("key=\""),
        "a key label without the opt-in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_example_keeps_the_money_under_both_locks() {
    let summary = transfer::run("memory://?namespace=example-transfer")
        .await
        .expect("the example runs");
    assert_eq!(summary.transfers, 100);
    assert_eq!(summary.total, summary.opened, "{summary:?}");
}
