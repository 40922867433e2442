//! Taking and completing nodes (rules 1-4, 8): a diamond from submission to
//! its end, takes oldest first across runs, retry delays and attempts,
//! fenced tokens and renewals, lease expiry.

use super::*;

/// Rules 2, 3, 5, 7, 8: a diamond from submission to its end.
#[tokio::test]
async fn a_diamond_runs_from_its_root_to_its_end() {
    let b = backend("diamond").await;
    let g = G::new(&b, "etl");
    let before = SystemTime::now() - Duration::from_millis(5);
    assert_eq!(g.submit("r1", &diamond()).await, Submit::Created);
    let s = g.status("r1").await;
    assert_eq!(s.state, RunState::Running);
    assert_eq!(s.transitions, 0);
    assert!(s.submitted_at >= before && s.submitted_at <= SystemTime::now());
    assert_eq!(s.ended_at, None);
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Ready),
            ("b", NodeState::Pending),
            ("c", NodeState::Pending),
            ("d", NodeState::Pending),
        ]
    );
    assert_eq!(at(&s, "a").ready_in, Some(Duration::ZERO));
    assert_eq!(at(&s, "b").ready_in, None);
    assert_eq!(at(&s, "a").token, None);

    let a = g.take_named("r1", "a").await;
    assert_eq!((a.attempt, a.parents.clone()), (1, vec![]));
    let s = g.status("r1").await;
    let na = at(&s, "a");
    assert_eq!(na.state, NodeState::Running);
    assert_eq!(na.attempts, 1);
    assert_eq!(na.token, Some(a.token));
    assert_eq!(na.worker.as_ref().map(|w| w.as_str()), Some("w-1"));
    assert!(na.expires_in.unwrap() > TTL - Duration::from_secs(5) && na.expires_in <= Some(TTL));
    assert!(na.started_at.unwrap() >= before);
    assert_eq!(s.transitions, 1);
    // Nothing else is ready: idle until a's lease would expire.
    let next = g.idle().await.unwrap();
    assert!(
        next > TTL - Duration::from_secs(5) && next <= TTL,
        "{next:?}"
    );

    assert_eq!(
        g.complete(&a, success("A")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    let s = g.status("r1").await;
    assert_eq!(s.transitions, 4, "a ended, b and c ready");
    assert_eq!(at(&s, "a").result.as_deref(), Some(&b"A"[..]));
    assert!(at(&s, "a").ended_at.is_some());
    assert_eq!(at(&s, "a").expires_in, None);
    let (x, y) = (g.take().await, g.take().await);
    let mut names = [x.node.as_str(), y.node.as_str()];
    names.sort();
    assert_eq!(names, ["b", "c"]);
    assert!(x.token > a.token && y.token > a.token && x.token != y.token);
    assert_eq!(
        x.parents,
        [(key("a"), Outcome::Succeeded(b"A".to_vec()))],
        "the parent's result"
    );
    let (b_, c_) = if x.node.as_str() == "b" {
        (x, y)
    } else {
        (y, x)
    };
    g.complete(&c_, success("C")).await;
    assert_eq!(g.status("r1").await.nodes[3].state, NodeState::Pending);
    assert_eq!(
        g.idle().await.map(|d| d > Duration::from_secs(20)),
        Some(true)
    );
    assert_eq!(
        g.complete(&b_, success("B")).await,
        recorded(NodeState::Succeeded, RunState::Running)
    );
    let d = g.take_named("r1", "d").await;
    // In d's edge order: c, then b.
    assert_eq!(
        d.parents,
        [
            (key("c"), Outcome::Succeeded(b"C".to_vec())),
            (key("b"), Outcome::Succeeded(b"B".to_vec())),
        ]
    );
    assert_eq!(
        g.complete(&d, success("")).await,
        recorded(NodeState::Succeeded, RunState::Succeeded)
    );
    let s = g.status("r1").await;
    assert_eq!(s.state, RunState::Succeeded);
    // Takes: 4; ends: 4; made ready: 3.
    assert_eq!(s.transitions, 11);
    assert!(s.ended_at.unwrap() >= s.submitted_at);
    assert!(s.nodes.iter().all(|n| n.attempts == 1 && n.error.is_none()));
    assert_eq!(g.idle().await, None);
    // Results only when asked for.
    let lean =
        g.g.status(&g.graph, &key("r1"), false)
            .await
            .unwrap()
            .unwrap();
    assert!(lean.nodes.iter().all(|n| n.result.is_none()));
}

/// Rule 3: the earliest ready time first, over every run of the graph;
/// tokens from the graph's one counter.
#[tokio::test]
async fn takes_go_oldest_first_across_runs() {
    let b = backend("order").await;
    let g = G::new(&b, "g");
    let one = spec(vec![node("x", &[])]);
    for run in ["r1", "r2", "r3"] {
        g.submit(run, &one).await;
        // A later server millisecond for the next run's root.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut last = FencingToken(0);
    for run in ["r1", "r2", "r3"] {
        let t = g.take_named(run, "x").await;
        assert!(t.token > last);
        last = t.token;
    }
    // Another graph is another queue.
    let other = G::new(&b, "g2");
    assert_eq!(other.idle().await, None);
    other.submit("r1", &one).await;
    other.take_named("r1", "x").await;
}

/// Rules 3 and 4: a failure with a retry delay is ready again after it; a
/// take before says when; without a delay, or out of attempts, it fails.
#[tokio::test]
async fn retries_wait_their_delay_and_attempts_run_out() {
    let b = backend("retry").await;
    let g = G::new(&b, "g");
    // Long enough that the reads below come before it passes, even on a
    // loaded machine.
    let delay = Duration::from_millis(800);
    g.submit("r", &spec(vec![NodeSpec::new(key("n")).max_attempts(3)]))
        .await;
    let t1 = g.take().await;
    assert_eq!(
        g.complete(&t1, failure("flaky", Some(delay))).await,
        recorded(NodeState::Ready, RunState::Running)
    );
    let s = g.status("r").await;
    let n = at(&s, "n");
    assert_eq!((n.state, n.attempts), (NodeState::Ready, 1));
    assert_eq!(n.error.as_deref(), Some("flaky"));
    assert!(n.ready_in.unwrap() > Duration::ZERO && n.ready_in.unwrap() <= delay);
    assert_eq!(s.transitions, 2);
    let next = g.idle().await.unwrap();
    assert!(next > Duration::ZERO && next <= delay, "{next:?}");
    tokio::time::sleep(next + MARGIN).await;
    let t2 = g.take().await;
    assert_eq!(t2.attempt, 2);
    assert!(t2.token > t1.token);
    // The old attempt's end is recorded: its token changes nothing, and
    // is told so (the state its completion left).
    assert_eq!(
        g.complete(&t1, success("late")).await,
        Complete::Already {
            state: NodeState::Ready
        }
    );
    assert_eq!(at(&g.status("r").await, "n").attempts, 2);
    assert_eq!(
        g.complete(&t2, failure("again", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Ready, RunState::Running)
    );
    let t3 = g.take().await;
    assert_eq!(t3.attempt, 3);
    // The last attempt fails even though it asks for a retry.
    assert_eq!(
        g.complete(&t3, failure("final", Some(Duration::ZERO)))
            .await,
        recorded(NodeState::Failed, RunState::Failed)
    );
    let s = g.status("r").await;
    assert_eq!(at(&s, "n").error.as_deref(), Some("final"));
    assert_eq!(at(&s, "n").attempts, 3);
    assert_eq!(s.transitions, 6);

    // Without a delay, a failure fails at once, attempts left or not.
    g.submit("r2", &spec(vec![NodeSpec::new(key("n")).max_attempts(5)]))
        .await;
    let t = g.take().await;
    assert_eq!(
        g.complete(&t, failure("no retry", None)).await,
        recorded(NodeState::Failed, RunState::Failed)
    );
}

/// Rule 4: only the running attempt's token acts; anything else is lost or
/// stale and changes nothing.
#[tokio::test]
async fn stale_tokens_change_nothing() {
    let b = backend("stale").await;
    let g = G::new(&b, "g");
    g.submit("r", &diamond()).await;
    let a = g.take().await;
    let wrong = FencingToken(a.token.get() - 1);
    assert_eq!(
        g.complete_token(&a, wrong, success("x")).await,
        Complete::Stale {
            state: Some(NodeState::Running)
        }
    );
    assert_eq!(
        g.g.renew(&g.graph, &a.run, &a.node, wrong, TTL)
            .await
            .unwrap(),
        Renew::Lost
    );
    // Nothing changed.
    let s = g.status("r").await;
    assert_eq!(s.transitions, 1);
    assert_eq!(at(&s, "a").state, NodeState::Running);
    // A pending node, an unknown node, an unknown run.
    let pending = Taken::new(key("r"), key("b"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&pending, success("x")).await,
        Complete::Stale {
            state: Some(NodeState::Pending)
        }
    );
    let unknown = Taken::new(key("r"), key("zz"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&unknown, success("x")).await,
        Complete::Stale { state: None }
    );
    let elsewhere = Taken::new(key("nope"), key("a"), 1, a.token, vec![]);
    assert_eq!(
        g.complete(&elsewhere, success("x")).await,
        Complete::Stale { state: None }
    );
    assert_eq!(g.renew(&elsewhere, TTL).await, Renew::Lost);
    // Renewal extends the lease.
    assert_eq!(g.renew(&a, Duration::from_secs(90)).await, Renew::Renewed);
    let left = at(&g.status("r").await, "a").expires_in.unwrap();
    assert!(left > Duration::from_secs(80), "{left:?}");
    // Completed: the token is spent (a completion sent again is told it
    // was recorded, and changes nothing).
    g.complete(&a, success("A")).await;
    assert_eq!(
        g.complete(&a, success("again")).await,
        Complete::Already {
            state: NodeState::Succeeded
        }
    );
    assert_eq!(g.renew(&a, TTL).await, Renew::Lost);
    assert_eq!(
        at(&g.status("r").await, "a").result.as_deref(),
        Some(&b"A"[..])
    );
}

/// Rule 1: an expired lease is ready again with a new attempt and a larger
/// token while attempts last, then failed, which resolves its dependents;
/// its tokens are stale from the moment it expired.
#[tokio::test]
async fn expired_leases_retry_then_fail_and_resolve() {
    let b = backend("expiry").await;
    let g = G::new(&b, "g");
    let short = Duration::from_millis(150);
    g.submit(
        "r",
        &spec(vec![
            NodeSpec::new(key("a")).max_attempts(2),
            node("b", &[(0, On::Success)]),
            node("c", &[(0, On::Failure)]),
        ]),
    )
    .await;
    let t1 = g.take_ttl(short).await;
    let next = g.idle().await.unwrap();
    assert!(next <= short, "{next:?}");
    let mut ready = g.watch_ready().await;
    tokio::time::sleep(short + MARGIN).await;
    // Noticed by the next step, whichever: here a renewal.
    assert_eq!(g.renew(&t1, TTL).await, Renew::Lost);
    wakes(&mut ready).await;
    let s = g.status("r").await;
    let a = at(&s, "a");
    assert_eq!((a.state, a.attempts), (NodeState::Ready, 1));
    assert_eq!(a.error.as_deref(), Some("lease expired"));
    assert_eq!(a.ready_in, Some(Duration::ZERO));
    assert_eq!(a.expires_in, None);
    assert_eq!(s.transitions, 2);
    assert_eq!(
        g.complete(&t1, success("late")).await,
        Complete::Stale {
            state: Some(NodeState::Ready)
        }
    );
    let t2 = g.take_ttl(short).await;
    assert_eq!(t2.attempt, 2);
    assert!(t2.token > t1.token);
    tokio::time::sleep(short + MARGIN).await;
    // Out of attempts: failed; b skipped by it, c ready.
    let s = g.status("r").await;
    assert_eq!(
        states(&s),
        [
            ("a", NodeState::Failed),
            ("b", NodeState::Skipped),
            ("c", NodeState::Ready),
        ]
    );
    assert_eq!(at(&s, "a").error.as_deref(), Some("lease expired"));
    assert_eq!(at(&s, "b").by, Some(key("a")));
    assert_eq!(s.transitions, 6);
    let c = g.take_named("r", "c").await;
    assert_eq!(
        c.parents,
        [(key("a"), Outcome::Failed("lease expired".into()))]
    );
    assert_eq!(
        g.complete(&c, success("handled")).await,
        recorded(NodeState::Succeeded, RunState::Failed)
    );
}
