//! Resolution (rule 5) and cancellation (rule 6).

use super::*;

// Rule 5: resolution.

#[tokio::test(start_paused = true)]
async fn edge_conditions_decide_and_skips_propagate_downstream() {
    let t = T::new();
    let nodes = || {
        vec![
            node("a", &[]),
            node("s", &[(0, On::Success)]),
            node("f", &[(0, On::Failure)]),
            node("y", &[(0, On::Any)]),
            node("s2", &[(1, On::Success)]),
            node("s3", &[(4, On::Success)]),
            node("z", &[(4, On::Any)]),
        ]
    };
    // a fails: s and what needs it succeeded are skipped, two levels down.
    t.submit("fails", nodes()).await;
    let a = t.take().await;
    assert_eq!(t.fail(&a, None).await, recorded(Failed, RunState::Running));
    assert_eq!(
        t.states("fails").await,
        [Failed, Skipped, Ready, Ready, Skipped, Skipped, Ready]
    );
    assert_eq!(t.by("fails", "s").await, by(Skipped, "a"));
    assert_eq!(t.by("fails", "s2").await, by(Skipped, "s"));
    assert_eq!(t.by("fails", "s3").await, by(Skipped, "s2"));
    let failed = Outcome::Failed("boom".into());
    let f = t.take().await;
    assert_eq!(
        (f.node.as_str(), &f.parents[..]),
        ("f", &[(k("a"), failed.clone())][..])
    );
    let y = t.take().await;
    assert_eq!(
        (y.node.as_str(), &y.parents[..]),
        ("y", &[(k("a"), failed)][..])
    );
    let z = t.take().await;
    assert_eq!(
        (z.node.as_str(), &z.parents[..]),
        ("z", &[(k("s2"), Outcome::Skipped(k("s")))][..])
    );
    for n in [&f, &y, &z] {
        t.ok(n).await;
    }
    // A failure a dependent handled still fails the run.
    assert_eq!(t.status("fails").await.state, RunState::Failed);

    // a succeeds: only the failure branch is skipped.
    t.submit("succeeds", nodes()).await;
    let a = t.take().await;
    assert_eq!(t.ok(&a).await, recorded(Succeeded, RunState::Running));
    assert_eq!(
        t.states("succeeds").await,
        [Succeeded, Ready, Skipped, Ready, Pending, Pending, Pending]
    );
    assert_eq!(t.by("succeeds", "f").await, by(Skipped, "a"));
    let s = t.take().await;
    assert_eq!(s.parents, [(k("a"), Outcome::Succeeded(b"a".to_vec()))]);
}

#[tokio::test(start_paused = true)]
async fn a_node_waits_for_every_edge_and_sees_its_parents_in_edge_order() {
    let t = T::new();
    t.submit(
        "r",
        vec![
            node("a", &[]),
            node("b", &[]),
            node("c", &[(1, On::Success), (0, On::Any)]),
        ],
    )
    .await;
    let a = t.take().await;
    let b = t.take().await;
    t.ok(&b).await;
    assert_eq!(t.states("r").await, [Running, Succeeded, Pending]);
    t.fail(&a, None).await;
    let c = t.take().await;
    assert_eq!(
        c.parents,
        [
            (k("b"), Outcome::Succeeded(b"b".to_vec())),
            (k("a"), Outcome::Failed("boom".into()))
        ]
    );
    let s = t.b.status(&t.g, &k("r"), false).await.unwrap().unwrap();
    assert_eq!(s.nodes[1].result, None);
    assert_eq!(t.status("r").await.nodes[1].result, Some(b"b".to_vec()));
}

#[tokio::test(start_paused = true)]
async fn a_skip_names_the_upstream_node_whose_edge_broke() {
    let t = T::new();
    // n fails; c is skipped by n and resolved at once (depth first): d's
    // edges from n and c both broke, and c is the node being resolved.
    t.submit(
        "both",
        vec![
            node("n", &[]),
            node("c", &[(0, On::Success)]),
            node("d", &[(0, On::Success), (1, On::Success)]),
        ],
    )
    .await;
    let n = t.take().await;
    t.fail(&n, None).await;
    assert_eq!(t.by("both", "c").await, by(Skipped, "n"));
    assert_eq!(t.by("both", "d").await, by(Skipped, "c"));
    // Here c's edge into d holds (Any): d is skipped by n, whose edge broke.
    t.submit(
        "one",
        vec![
            node("n", &[]),
            node("c", &[(0, On::Success)]),
            node("d", &[(0, On::Success), (1, On::Any)]),
        ],
    )
    .await;
    let n = t.take().await;
    t.fail(&n, None).await;
    assert_eq!(t.by("one", "d").await, by(Skipped, "n"));
    assert_eq!(t.status("one").await.state, RunState::Failed);
    // a fails: b is skipped by a and resolved at once, p by b and resolved
    // at once (its edge into d holds); back in b's resolution, d is skipped
    // by b, before a's resolution reaches it.
    t.submit(
        "deep",
        vec![
            node("a", &[]),
            node("b", &[(0, On::Success)]),
            node("p", &[(1, On::Success)]),
            node("d", &[(0, On::Success), (1, On::Success), (2, On::Any)]),
        ],
    )
    .await;
    let a = t.take().await;
    t.fail(&a, None).await;
    assert_eq!(t.by("deep", "p").await, by(Skipped, "b"));
    assert_eq!(t.by("deep", "d").await, by(Skipped, "b"));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_upstream_node_cancels_its_dependents() {
    // A run's cancellation cancels every pending node itself (rule 6), so
    // resolution from a cancelled node is reached here directly.
    let spec = spec(vec![
        node("a", &[]),
        node("b", &[(0, On::Any)]),
        node("c", &[(1, On::Success)]),
        node("d", &[]),
    ]);
    let mut q = Queues::default();
    let mut step = Step {
        now: tokio::time::Instant::now(),
        wall: std::time::SystemTime::now(),
        wall_us: 0,
        ready: Vec::new(),
        changed: Vec::new(),
    };
    let mut run = Run::new(k("r"), 0, &spec, KEEP, &mut q, &mut step);
    run.force(0, Cancelled, &mut q, &mut step);
    run.resolve_from(0, &mut q, &mut step);
    let s = run.status(false, step.now);
    let told: Vec<_> = (s.nodes.iter())
        .map(|n| (n.state, n.by.as_ref().map(|b| b.to_string())))
        .collect();
    assert_eq!(
        told,
        [
            (Cancelled, None),
            by(Cancelled, "a"),
            by(Cancelled, "b"),
            (Ready, None)
        ]
    );
    assert_eq!(s.transitions, 3);
    assert_eq!(q.ready.len(), 1);
}

// Rules 5 and 6: OnFailure::CancelRun.

#[tokio::test(start_paused = true)]
async fn a_cancel_run_node_cancels_its_run_after_resolving_its_dependents() {
    let t = T::new();
    t.submit(
        "r",
        vec![
            node("a", &[]).on_failure(OnFailure::CancelRun),
            node("handler", &[(0, On::Failure)]),
            node("needs_a", &[(0, On::Success)]),
            node("other", &[]),
            node("later", &[(3, On::Success)]),
        ],
    )
    .await;
    let a = t.take().await;
    let other = t.take().await;
    assert_eq!(t.fail(&a, None).await, recorded(Failed, RunState::Running));
    let s = t.status("r").await;
    assert_eq!(s.cancelled.as_deref(), Some("node \"a\" failed"));
    assert_eq!(
        t.states("r").await,
        [Failed, Cancelled, Skipped, Running, Cancelled]
    );
    assert_eq!(t.by("r", "handler").await, (Cancelled, None));
    assert_eq!(t.by("r", "needs_a").await, by(Skipped, "a"));
    // take a, take other, a failed, handler ready then cancelled, needs_a
    // skipped, later cancelled.
    assert_eq!(s.transitions, 7);
    assert_eq!(t.idle().await, Some(TTL));
    assert_eq!(t.renew(&other).await, Renew::Cancelled);
    assert_eq!(t.ok(&other).await, recorded(Succeeded, RunState::Cancelled));
    assert_eq!(
        t.cancel("r").await,
        Cancel::AlreadyEnded(RunState::Cancelled)
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_run_node_that_ends_its_run_leaves_it_failed() {
    let t = T::new();
    t.submit("r", vec![node("a", &[]).on_failure(OnFailure::CancelRun)])
        .await;
    let a = t.take().await;
    assert_eq!(t.fail(&a, None).await, recorded(Failed, RunState::Failed));
    assert_eq!(t.status("r").await.cancelled, None);
}

// Rule 6: cancel.

#[tokio::test(start_paused = true)]
async fn a_cancelled_run_ends_when_its_running_attempts_do() {
    let t = T::new();
    let roots = ["w", "x", "y", "z"].map(|n| node(n, &[]).max_attempts(3));
    let mut nodes = roots.to_vec();
    nodes.push(node("p", &[(0, On::Success)]));
    nodes.push(node("q", &[]));
    t.submit("r", nodes).await;
    let [w, x, y, z] = [
        t.take().await,
        t.take().await,
        t.take().await,
        t.take().await,
    ];
    assert_eq!(t.cancel("r").await, Cancel::Cancelled { running: 4 });
    assert_eq!(
        t.states("r").await,
        [Running, Running, Running, Running, Cancelled, Cancelled]
    );
    assert_eq!(t.by("r", "p").await, (Cancelled, None));
    assert_eq!(t.cancel("r").await, Cancel::AlreadyEnded(RunState::Running));
    assert_eq!(t.idle().await, Some(TTL));
    advance(SEC).await;
    // Told, not extended.
    assert_eq!(t.renew(&y).await, Renew::Cancelled);
    assert_eq!(t.node("r", "y").await.expires_in, Some(TTL - SEC));
    // The work was done: it counts.
    assert_eq!(t.ok(&w).await, recorded(Succeeded, RunState::Running));
    assert_eq!(
        t.fail(&x, Some(SEC)).await,
        recorded(Cancelled, RunState::Running)
    );
    assert_eq!(t.node("r", "x").await.error.as_deref(), Some("boom"));
    advance(TTL).await;
    let s = t.status("r").await;
    assert_eq!(
        s.nodes.iter().map(|n| n.state).collect::<Vec<_>>(),
        [
            Succeeded, Cancelled, Cancelled, Cancelled, Cancelled, Cancelled
        ]
    );
    // An expiry in a cancelled run is no failure: no error.
    assert_eq!(s.nodes[2].error, None);
    assert_eq!(
        (s.state, s.cancelled.as_deref()),
        (RunState::Cancelled, Some("stop"))
    );
    assert_eq!(s.ended_at, Some(s.submitted_at + TTL + SEC));
    assert_eq!(
        t.ok(&z).await,
        Complete::Stale {
            state: Some(Cancelled)
        }
    );
    assert_eq!(
        t.cancel("r").await,
        Cancel::AlreadyEnded(RunState::Cancelled)
    );
    assert_eq!(t.cancel("nope").await, Cancel::NotFound);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_with_nothing_running_ends_it_at_once() {
    let t = T::new();
    t.submit("r", vec![node("a", &[]), node("b", &[(0, On::Success)])])
        .await;
    assert_eq!(t.cancel("r").await, Cancel::Cancelled { running: 0 });
    let s = t.status("r").await;
    assert_eq!((s.state, s.transitions), (RunState::Cancelled, 2));
    assert!(s.ended_at.is_some());
    assert_eq!(t.idle().await, None);
    // An ended run cannot be cancelled.
    t.submit("done", vec![node("a", &[])]).await;
    let a = t.take().await;
    t.ok(&a).await;
    assert_eq!(
        t.cancel("done").await,
        Cancel::AlreadyEnded(RunState::Succeeded)
    );
}
