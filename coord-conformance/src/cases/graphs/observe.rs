//! Following a run over time: `wait` returns when it ended, observers show
//! every transition or say how many they missed, and an ended run is kept
//! for its retention and then forgotten.

use super::*;

cases! {
    family: "graph", needs: [Need::Graphs];

/// `wait` returns when the run ended, not before (it waits while nothing
/// works), promptly once it ended (woken by the backend, not its 10 s retry
/// delay), with the final status; on an ended run it returns at once.
pub async fn graph_wait_returns_when_run_ends(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let run = chain(&a).submit("r").await.unwrap();
    let waiter = chain(&b).run("r").unwrap();
    let mut waiting = tokio::spawn(async move { waiter.wait().await });
    if let Ok(res) = timeout(ms(300), &mut waiting).await {
        panic!("wait returned while nothing ran: {res:?}");
    }
    let mut w = chain(&a).worker();
    for n in ["a", "b"] {
        assert_eq!(within(w.work_next(named), n).await.node, n);
    }
    if let Ok(res) = timeout(ms(100), &mut waiting).await {
        panic!("wait returned with c still to run: {res:?}");
    }
    within(w.work_next(named), "c").await;
    let st = join(waiting, PROMPTLY, "the waiter").await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Succeeded);
    assert_eq!(st, run.status().await.unwrap(), "the final status");
    let again = at_once(run.wait()).await.unwrap();
    assert_eq!(again.state, RunState::Succeeded);
}

/// An observer started before any work yields `Started` (the run as first
/// seen), then each node's changes (each from the state last shown), and
/// `Ended` with the final status, then nothing; the transitions it shows
/// plus those it says it missed add up to the run's count.
pub async fn graph_observer_sees_every_transition_until_ended(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, o) = (ctx.client("a").await, ctx.client("o").await);
    let run = chain(&a).submit("r").await.unwrap();
    let mut obs = chain(&o).run("r").unwrap().observe();
    let first = within(obs.next(), "the first look").await;
    let start = match first.as_slice() {
        [RunEvent::Started(st)] => st.clone(),
        other => panic!("expected Started, got {other:?}"),
    };
    assert_eq!(start.transitions, 0);
    let mut last: Vec<(String, NodeState, u32)> = start
        .nodes
        .iter()
        .map(|n| (n.name.as_str().to_owned(), n.state, n.attempts))
        .collect();
    let loops = workers(&chain(&a), 2, |w| w.run(named));
    let (mut shown, mut missed, mut end) = (0u64, 0u64, None);
    let observing = async {
        while end.is_none() {
            let events = obs.next().await.unwrap();
            assert!(!events.is_empty(), "next() waits for a change");
            for e in events {
                assert!(end.is_none(), "nothing after Ended: {e:?}");
                match e {
                    RunEvent::Node {
                        node,
                        from,
                        to,
                        attempts,
                        status,
                    } => {
                        let l = last
                            .iter_mut()
                            .find(|l| l.0 == node)
                            .expect("a node of the run");
                        assert_eq!(from, l.1, "{node}: from the state last shown");
                        assert!(to != from || attempts != l.2, "{node}: a change");
                        assert_eq!((status.state, status.attempts), (to, attempts));
                        (l.1, l.2) = (to, attempts);
                        shown += 1;
                    }
                    RunEvent::Missed { transitions } => missed += transitions,
                    RunEvent::Ended(st) => end = Some(st),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
    };
    let observed = alongside(timeout(RUN_WITHIN, observing), loops).await;
    observed.expect("the run ends and the observer says so");
    let end = end.unwrap();
    assert_all_ended(&end, "r");
    assert_eq!(
        shown + missed,
        end.transitions - start.transitions,
        "shown {shown} + missed {missed}"
    );
    assert_eq!(end.transitions, 8, "a: 2, b: 3, c: 3");
    for n in &end.nodes {
        let l = last.iter().find(|l| l.0 == n.name.as_str()).unwrap();
        assert_eq!(
            (l.1, l.2),
            (n.state, n.attempts),
            "the last change shown is the end"
        );
    }
    assert!(
        within(obs.next(), "after Ended").await.is_empty(),
        "nothing after Ended"
    );
    assert_eq!(run.status().await.unwrap().state, RunState::Succeeded);
}

/// An observer that looks only before and after the whole run shows each
/// node's change from its first to its last state, says how many
/// transitions it did not show (8 - 3 = 5), and the end.
pub async fn graph_observer_counts_missed_transitions(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = chain(&client);
    let run = graph.submit("r").await.unwrap();
    let mut obs = run.observe();
    let first = within(obs.next(), "the first look").await;
    assert!(
        matches!(first.as_slice(), [RunEvent::Started(_)]),
        "{first:?}"
    );
    let mut w = graph.worker();
    while running(&run).await {
        within(w.work_next(named), "a node").await;
    }
    let events = within(obs.next(), "the second look").await;
    use NodeState::*;
    let mut changes = Vec::new();
    let (mut missed, mut ended) = (None, None);
    for e in events {
        match e {
            RunEvent::Node {
                node,
                from,
                to,
                attempts,
                ..
            } => changes.push((node, from, to, attempts)),
            RunEvent::Missed { transitions } => missed = Some(transitions),
            RunEvent::Ended(st) => ended = Some(st),
            other => panic!("unexpected {other:?}"),
        }
    }
    let expected = [
        ("a", Ready, Succeeded, 1),
        ("b", Pending, Succeeded, 1),
        ("c", Pending, Succeeded, 1),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, f, t, a)| ((*n).to_owned(), *f, *t, *a))
        .collect();
    assert_eq!(changes, expected);
    assert_eq!(missed, Some(5), "8 transitions, 3 shown");
    let ended = ended.expect("Ended");
    assert_all_ended(&ended, "r");
    assert_eq!(ended.transitions, 8);
    assert!(within(obs.next(), "after Ended").await.is_empty());
}

/// An ended run is kept for its graph's retention (submitting its id
/// returns it) and then forgotten (`NotFound`, not before the retention
/// passed since it ended); its id can then be submitted again, as a new
/// run.
pub async fn graph_retention_forgets_ended_run_and_frees_id(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let keep = ms(200);
    let graph = client
        .graph(G)
        .node("only")
        .retention(keep)
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    let before_end = Instant::now();
    within(w.work_one(named), "only").await.expect("ready");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert!(
        !graph.submit("r").await.unwrap().was_created(),
        "kept: the same run"
    );
    let gone = eventually(keep + PROMPTLY, || async {
        matches!(run.status().await, Err(Error::NotFound { .. })).then(Instant::now)
    })
    .await
    .expect("forgotten after its retention");
    assert!(
        gone >= before_end + keep - ms(5),
        "forgotten {:?} after it ended",
        gone - before_end
    );
    assert_not_found(run.status().await, "forgotten");
    let again = graph.submit("r").await.unwrap();
    assert!(again.was_created(), "the id is free again");
    let st = again.status().await.unwrap();
    assert_eq!(
        (states(&st), st.transitions),
        (want(&[("only", NodeState::Ready)]), 0)
    );
    assert_eq!(node(&st, "only").attempts, 0, "a new run");
    within(w.work_one(named), "only again")
        .await
        .expect("ready");
    assert_all_ended(&again.status().await.unwrap(), "r again");
}
}
