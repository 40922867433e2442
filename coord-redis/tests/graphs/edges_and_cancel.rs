//! Edge conditions and skips (rule 5), cancellation by a user and by a
//! `CancelRun` failure with attempts still running (rules 4-6).

use super::*;

/// Rule 5: edge conditions, a skip carried two levels down with `by`
/// naming the node that decided it, and `Any` satisfied by a skip.
#[tokio::test]
async fn edge_conditions_skip_and_propagate() {
    use On::{Any, Failure, Success};
    let b = backend("edges").await;
    let g = G::new(&b, "g");
    g.submit(
        "r",
        &spec(vec![
            node("a", &[]),
            node("ok", &[(0, Success)]),                 // skipped by a
            node("onfail", &[(0, Failure)]),             // ready
            node("any", &[(0, Any)]),                    // ready
            node("deep", &[(1, Success)]),               // skipped by ok
            node("after", &[(1, Any)]),                  // ready: ok was skipped
            node("deeper", &[(4, Failure)]),             // skipped by deep
            node("both", &[(2, Success), (1, Success)]), // skipped by ok
        ]),
    )
    .await;
    let a = g.take().await;
    assert_eq!(
        g.complete(&a, failure("boom", None)).await,
        recorded(NodeState::Failed, RunState::Running)
    );
    let s = g.status("r").await;
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("ok", NodeState::Skipped),
            ("onfail", NodeState::Ready),
            ("any", NodeState::Ready),
            ("deep", NodeState::Skipped),
            ("after", NodeState::Ready),
            ("deeper", NodeState::Skipped),
            ("both", NodeState::Skipped),
        ]
    );
    let by = |n: &str| at(&s, n).by.clone().map(|k| k.as_str().to_owned());
    assert_eq!(by("ok").as_deref(), Some("a"));
    assert_eq!(by("deep").as_deref(), Some("ok"));
    assert_eq!(by("deeper").as_deref(), Some("deep"));
    assert_eq!(by("both").as_deref(), Some("ok"));
    assert_eq!(by("onfail"), None);
    assert!(at(&s, "deep").ended_at.is_some());
    // a's end, 4 skips, 3 ready.
    assert_eq!(s.transitions, 1 + 1 + 4 + 3);
    let mut seen = vec![];
    for _ in 0..3 {
        let t = g.take().await;
        match t.node.as_str() {
            "onfail" => assert_eq!(t.parents, [(key("a"), Outcome::Failed("boom".into()))]),
            "any" => assert_eq!(t.parents, [(key("a"), Outcome::Failed("boom".into()))]),
            "after" => assert_eq!(t.parents, [(key("ok"), Outcome::Skipped(key("a")))]),
            other => panic!("took {other}"),
        }
        seen.push(t.node.as_str().to_owned());
        let last = seen.len() == 3;
        assert_eq!(
            g.complete(&t, success("")).await,
            recorded(
                NodeState::Succeeded,
                if last {
                    RunState::Failed
                } else {
                    RunState::Running
                }
            )
        );
    }
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Failed);
    assert_eq!(s.cancelled, None);
}

/// Rules 4 and 6: a cancelled run cancels what has not started; running
/// attempts learn it when renewing and end as they complete or expire.
#[tokio::test]
async fn cancel_leaves_running_attempts_to_end() {
    let b = backend("cancel").await;
    let g = G::new(&b, "g");
    // Long enough to outlive the steps up to the cancellation.
    let short = Duration::from_millis(500);
    g.submit(
        "r",
        &spec(vec![
            node("a", &[]),
            node("b", &[]),
            node("c", &[]),
            node("d", &[]),
            node("e", &[(0, On::Any)]),
            node("f", &[]),
        ]),
    )
    .await;
    let ta = g.take().await;
    let tb = g.take().await;
    let tc = g.take_ttl(short).await;
    let td = g.take().await;
    assert_eq!(
        [&ta, &tb, &tc, &td].map(|t| t.node.as_str()),
        ["a", "b", "c", "d"]
    );
    let mut run_watch = g.watch_run("r").await;
    assert_eq!(
        g.cancel("r", "by the operator").await,
        Cancel::Cancelled { running: 4 }
    );
    wakes(&mut run_watch).await;
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Running);
    assert_eq!(s.cancelled.as_deref(), Some("by the operator"));
    assert_eq!(at(&s, "e").state, NodeState::Cancelled);
    assert_eq!(at(&s, "f").state, NodeState::Cancelled);
    assert_eq!(
        (at(&s, "e").by.clone(), at(&s, "f").by.clone()),
        (None, None)
    );
    assert!(at(&s, "f").ended_at.is_some());
    assert_eq!(s.transitions, 4 + 2);
    // Nothing of it is taken any more.
    assert!(matches!(g.try_take(TTL).await, Take::Idle { .. }));
    assert_eq!(
        g.cancel("r", "again").await,
        Cancel::AlreadyEnded(RunState::Running)
    );
    assert_eq!(g.renew(&ta, TTL).await, Renew::Cancelled);
    // Not extended.
    let left = at(&g.status("r").await, "a").expires_in.unwrap();
    assert!(left <= TTL);
    assert_eq!(
        g.complete(&ta, success("done anyway")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    assert_eq!(
        g.complete(&tb, failure("broke", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Cancelled, RunState::Running)
    );
    tokio::time::sleep(short + MARGIN).await;
    let s = g.status("r").await;
    assert_eq!(at(&s, "c").state, NodeState::Cancelled);
    assert_eq!(at(&s, "c").error, None);
    assert_eq!(at(&s, "b").error.as_deref(), Some("broke"));
    assert_eq!(at(&s, "a").result.as_deref(), Some(&b"done anyway"[..]));
    // e, after a, was cancelled with the run (by none) and stays so once a
    // succeeded: in a cancelled run nothing is pending any more.
    assert_eq!(
        (at(&s, "e").state, at(&s, "e").by.clone()),
        (NodeState::Cancelled, None)
    );
    assert_eq!(s.state, RunState::Running);
    assert_eq!(
        g.complete(&td, failure("x", None)).await,
        recorded(NodeState::Cancelled, RunState::Cancelled)
    );
    let s = g.status("r").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert!(s.ended_at.is_some());
    assert_eq!(s.transitions, 6 + 4);
    assert_eq!(
        g.cancel("r", "again").await,
        Cancel::AlreadyEnded(RunState::Cancelled)
    );
    assert_eq!(g.cancel("nope", "x").await, Cancel::NotFound);
    // A run with nothing running ends at once.
    g.submit("r2", &diamond()).await;
    assert_eq!(
        g.cancel("r2", "stop").await,
        Cancel::Cancelled { running: 0 }
    );
    let s = g.status("r2").await;
    assert_eq!(s.state, RunState::Cancelled);
    assert!(s.nodes.iter().all(|n| n.state == NodeState::Cancelled));
}

/// Rule 5: a `CancelRun` failure cancels the run in its step; the nodes it
/// could not cancel end as they would in a cancelled run.
#[tokio::test]
async fn a_cancel_run_failure_cancels_the_run() {
    let b = backend("cancel_run").await;
    let g = G::new(&b, "g");
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).on_failure(OnFailure::CancelRun),
            node("b", &[]),
            node("c", &[(1, On::Success)]),
            node("d", &[(0, On::Failure)]),
        ]),
    )
    .await;
    let ta = g.take_named("r", "a").await;
    let tb = g.take_named("r", "b").await;
    assert_eq!(
        g.complete(&ta, failure("fatal", None)).await,
        recorded(NodeState::Failed, RunState::Running)
    );
    let s = g.status("r").await;
    assert_eq!(s.cancelled.as_deref(), Some("node \"a\" failed"));
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("b", NodeState::Running),
            ("c", NodeState::Cancelled),
            // Made ready by a's failure, then cancelled with the run.
            ("d", NodeState::Cancelled),
        ]
    );
    assert_eq!(g.renew(&tb, TTL).await, Renew::Cancelled);
    assert_eq!(
        g.complete(&tb, success("B")).await,
        recorded(NodeState::Succeeded, RunState::Cancelled)
    );
    assert_eq!(g.idle().await, None);

    // The last node failing ends the run, failed: nothing is left to cancel.
    g.submit(
        "single",
        &spec(vec![
            NodeSpec::new(key("a")).on_failure(OnFailure::CancelRun),
        ]),
    )
    .await;
    let t = g.take().await;
    assert_eq!(
        g.complete(&t, failure("fatal", None)).await,
        recorded(NodeState::Failed, RunState::Failed)
    );
    assert_eq!(g.status("single").await.cancelled, None);
}
