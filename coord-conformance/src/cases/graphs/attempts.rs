//! Attempts: a failing node is retried up to its `max_attempts`, after its
//! back-off, with increasing attempt numbers and tokens; a permanent
//! failure is not retried; a node whose worker crashed (taken through the
//! SPI and never renewed) is taken again after its lease expired, with the
//! next attempt and a larger token, or fails if that was its last attempt;
//! a dropped attempt is retried at once.

use super::*;

cases! {
    family: "graph", needs: [Need::Graphs];

/// A node whose body fails is retried (after its back-off) until its
/// `max_attempts`: attempts 1, 2, 3 with increasing tokens, ready again
/// after each failure but the last, then failed with the last error, its
/// dependent skipped. A node that fails once and then succeeds ends
/// succeeded on attempt 2.
pub async fn graph_failed_node_retried_up_to_max_attempts(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("flaky").max_attempts(3)))
        .node(quick(Node::new("lucky").max_attempts(3)))
        .node(Node::new("after").after("flaky"))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let mut w = graph.worker();
    let body = |ctx: NodeContext| async move {
        match (ctx.node(), ctx.attempt()) {
            ("lucky", 2) => Ok(ctx.attempt()),
            (n, a) => Err(NodeError::msg(format!("{n} failed attempt {a}"))),
        }
    };
    let mut worked = Vec::new();
    while running(&run).await {
        worked.push(within(w.work_next(body), "a retry").await);
        assert!(worked.len() <= 5, "more attempts than allowed: {worked:?}");
    }
    let of = |n: &str| {
        worked
            .iter()
            .filter(|w| w.node == n)
            .cloned()
            .collect::<Vec<_>>()
    };
    let (flaky, lucky) = (of("flaky"), of("lucky"));
    let attempts: Vec<u32> = flaky.iter().map(|w| w.attempt).collect();
    assert_eq!(attempts, [1, 2, 3], "{worked:?}");
    let tokens: Vec<FencingToken> = flaky.iter().map(|w| w.token).collect();
    assert_increasing(&tokens, "flaky's attempts");
    let ends: Vec<Option<NodeState>> = flaky.iter().map(|w| w.state).collect();
    use NodeState::*;
    assert_eq!(ends, [Some(Ready), Some(Ready), Some(Failed)], "{worked:?}");
    let lucky: Vec<(u32, Option<NodeState>)> = lucky.iter().map(|w| (w.attempt, w.state)).collect();
    assert_eq!(lucky, [(1, Some(Ready)), (2, Some(Succeeded))]);
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let f = node(&st, "flaky");
    assert_eq!(
        (f.state, f.attempts, f.token),
        (Failed, 3, Some(tokens[2])),
        "{f:?}"
    );
    assert_eq!(
        f.error.as_deref(),
        Some("flaky failed attempt 3"),
        "the last error kept"
    );
    assert_eq!(
        (state(&st, "lucky"), node(&st, "lucky").attempts),
        (Succeeded, 2)
    );
    assert_eq!(run.result::<u32>("lucky").await.unwrap(), Some(2));
    let after = node(&st, "after");
    assert_eq!(
        (after.state, after.by.as_ref().map(Key::as_str)),
        (Skipped, Some("flaky"))
    );
    assert_eq!(st.state, RunState::Failed);
}

/// A permanent failure fails the node at once, whatever attempts it has
/// left: one attempt, its error kept, nothing to take after it.
pub async fn graph_permanent_failure_not_retried(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(quick(Node::new("p").max_attempts(5)))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    let body = |_| async { Err::<(), _>(NodeError::msg("no such file").permanent()) };
    let worked = within(w.work_one(body), "p").await.expect("p is ready");
    assert_eq!((worked.attempt, worked.state), (1, Some(NodeState::Failed)));
    let again = w.work_one(|_| async { Ok::<_, NodeError>("ran again") });
    assert_eq!(within(again, "another take").await, None, "not retried");
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let p = node(&st, "p");
    assert_eq!((p.state, p.attempts), (NodeState::Failed, 1));
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("no such file")),
        "{p:?}"
    );
    assert_eq!(st.state, RunState::Failed);
}

/// A node whose worker crashed mid-attempt (taken through the SPI with a
/// 150 ms lease, never renewed) stays running with that worker until the
/// lease expires; then another worker takes it, as attempt 2 with a larger
/// token, not before, and the run goes on.
pub async fn graph_crashed_worker_node_taken_again_after_lease_expiry(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let graph = |c: &Client| {
        c.graph(G)
            .node(Node::new("n").max_attempts(3))
            .node(Node::new("m").after("n"))
            .build()
            .unwrap()
    };
    let run = graph(&a).submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let t0 = Instant::now();
    let first = crash_take(&backend, ms(150)).await;
    assert_eq!((first.node.as_str(), first.attempt), ("n", 1));
    let st = run.status().await.unwrap();
    let n = node(&st, "n");
    assert_eq!(
        (n.state, n.attempts, n.token),
        (NodeState::Running, 1, Some(first.token))
    );
    assert_eq!(n.worker.as_ref().map(InstanceId::as_str), Some("crashed"));
    assert!(n.expires_in.is_some_and(|e| e <= ms(150)), "{n:?}");
    let started = Arc::new(Mutex::new(None));
    let mut wb = graph(&b).worker();
    let body = {
        let started = started.clone();
        move |ctx: NodeContext| {
            *started.lock().unwrap() = Some(Instant::now());
            async move { Ok(ctx.attempt()) }
        }
    };
    let second = timeout(ms(150) + PROMPTLY, wb.work_next(&body)).await;
    let second = second
        .expect("taken again after the lease expired")
        .unwrap();
    let at = started.lock().unwrap().expect("the body ran");
    assert!(
        at >= t0 + ms(140),
        "taken again {:?} after the crash, before its lease of 150 ms expired",
        at - t0
    );
    assert_eq!((second.node.as_str(), second.attempt), ("n", 2));
    assert!(
        second.token > first.token,
        "{:?} after {:?}",
        second.token,
        first.token
    );
    assert_eq!(second.state, Some(NodeState::Succeeded));
    let st = run.status().await.unwrap();
    let n = node(&st, "n");
    assert_eq!((n.attempts, n.token), (2, Some(second.token)));
    assert_eq!(n.worker.as_ref().map(InstanceId::as_str), Some("b"));
    let m = within(wb.work_next(&body), "m").await;
    assert_eq!((m.node.as_str(), m.attempt), ("m", 1));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Succeeded);
}

/// A failed attempt with attempts left is ready again only after its
/// back-off (4 s, jittered to 2..4 s): the status shows it ready with the
/// time left and the failure's error, a take finds nothing (and says when
/// something will be takeable); cancelling the run then cancels the node,
/// not retried.
pub async fn graph_retry_waits_for_its_backoff(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let slow = Node::new("n").max_attempts(2).backoff(ms(4000), ms(4000));
    let graph = client.graph(G).node(slow).build().unwrap();
    let run = graph.submit("r").await.unwrap();
    let w = graph.worker();
    let fail = |_| async { Err::<(), _>(NodeError::msg("try later")) };
    let failed = within(w.work_one(fail), "n").await.expect("n is ready");
    assert_eq!((failed.attempt, failed.state), (1, Some(NodeState::Ready)));
    let st = run.status().await.unwrap();
    let n = node(&st, "n");
    assert_eq!((n.state, n.attempts), (NodeState::Ready, 1), "{n:?}");
    assert_eq!(n.error.as_deref(), Some("try later"), "kept while retrying");
    let left = n
        .ready_in
        .unwrap_or_else(|| panic!("the retry delay left: {n:?}"));
    assert!(left > ms(500) && left <= ms(4000), "{n:?}");
    let early = w.work_one(|_| async { Ok::<_, NodeError>("too early") });
    assert_eq!(
        within(early, "a take").await,
        None,
        "not before its back-off"
    );
    let backend = ctx.backend().await;
    match spi(&backend)
        .take(&key(G), &crashed(), ms(1000))
        .await
        .unwrap()
    {
        Take::Idle { next_in: Some(d) } => assert!(d > ms(500) && d <= ms(4000), "{d:?}"),
        other => panic!("expected Idle with the time to the retry, got {other:?}"),
    }
    assert!(run.cancel("no retry").await.unwrap());
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    let n = node(&st, "n");
    assert_eq!((n.state, n.attempts), (NodeState::Cancelled, 1), "{n:?}");
    assert_eq!(st.state, RunState::Cancelled);
}

/// A crashed attempt that was the node's last fails it once its lease
/// expired (error `lease expired`), seen by the next status; its
/// dependents resolve as after any failure. Before the expiry it runs.
pub async fn graph_expired_last_attempt_fails_node(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let client = ctx.client("a").await;
    let graph = client
        .graph(G)
        .node(Node::new("once").max_attempts(1))
        .node(Node::new("next").after("once"))
        .node(Node::new("cleanup").after_on("once", On::Failure))
        .build()
        .unwrap();
    let run = graph.submit("r").await.unwrap();
    let backend = ctx.backend().await;
    let taken = crash_take(&backend, ms(100)).await;
    assert_eq!(taken.node.as_str(), "once");
    let st = run.status().await.unwrap();
    assert_eq!(
        state(&st, "once"),
        NodeState::Running,
        "before its lease expired"
    );
    let failed = eventually(ms(100) + PROMPTLY, || async {
        let st = run.status().await.unwrap();
        (state(&st, "once") != NodeState::Running).then_some(st)
    })
    .await
    .expect("the expired attempt ended");
    use NodeState::*;
    assert_eq!(
        states(&failed),
        want(&[("once", Failed), ("next", Skipped), ("cleanup", Ready)])
    );
    let once = node(&failed, "once");
    assert!(
        once.error
            .as_deref()
            .is_some_and(|e| e.contains("lease expired")),
        "{once:?}"
    );
    assert_eq!((once.attempts, once.token), (1, Some(taken.token)));
    let w = graph.worker();
    let cleanup = within(w.work_one(|_| async { Ok::<_, NodeError>(()) }), "cleanup").await;
    assert_eq!(cleanup.map(|c| c.node), Some("cleanup".to_owned()));
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(st.state, RunState::Failed);
}

/// An attempt whose body's future is dropped (the worker stopped
/// mid-body) is ended as failed at once, to be retried at once: another
/// worker takes attempt 2 well before the dropped attempt's 5 s lease
/// would have expired.
pub async fn graph_dropped_attempt_retried_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, b) = (ctx.client("a").await, ctx.client("b").await);
    let run = three_tries(&a).submit("r").await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut wa = three_tries(&a).worker().ttl(ms(5000));
    let stuck = wa.work_next(|ctx| async move {
        tx.send(ctx.token()).unwrap();
        std::future::pending::<()>().await;
        Ok(())
    });
    // The body runs until it started; then its future is dropped.
    let first = tokio::select! {
        res = stuck => panic!("the stuck body ended: {res:?}"),
        first = timeout(PROMPTLY, rx.recv()) => first.expect("attempt 1 started").unwrap(),
    };
    let second = attempt_2_at_once(&b, &run).await;
    assert!(second.token > first, "{second:?} after {first:?}");
}

/// A worker dropped after its body returned, while its completion is on
/// the way (held by the test, not applied), fails the attempt at once as a
/// worker dropped mid-body does: another worker takes attempt 2 well
/// before the 30 s lease would have ended, instead of the node staying
/// running for nobody.
pub async fn graph_worker_dropped_mid_completion_retried_at_once(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let run = three_tries(&a).submit("r").await.unwrap();
    let done = Arc::new(tokio::sync::Notify::new());
    let (body_done, hold) = (done.clone(), switch.clone());
    let mut wa = three_tries(&a).worker().ttl(ms(30_000));
    let completing = wa.work_next(move |_| async move {
        hold.holding();
        body_done.notify_one();
        Ok(1)
    });
    tokio::select! {
        biased;
        res = completing => panic!("the held completion answered: {res:?}"),
        () = done.notified() => {}
    }
    switch.on();
    attempt_2_at_once(&b, &run).await;
}

/// A completion that could not reach the backend (it was unreachable for a
/// moment) is sent again while the attempt's lease holds: the node's one
/// attempt succeeds with its result, long before that lease would have
/// ended (it is neither failed for a lease that expired nor run again).
pub async fn graph_unreachable_completion_sent_again_within_the_lease(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let once = |c: &Client| c.graph(G).node(Node::new("n").max_attempts(1)).build().unwrap();
    let run = once(&b).submit("r").await.unwrap();
    let wa = once(&a).worker().ttl(ms(30_000));
    let cut = switch.clone();
    let working = wa.work_one(move |_| async move {
        cut.off();
        Ok(7u32)
    });
    let heal = async {
        sleep(ms(300)).await;
        switch.on();
    };
    let (worked, ()) = tokio::join!(timeout(PROMPTLY, working), heal);
    let worked = worked.expect("answered in time");
    let worked = worked.expect("the completion went through").expect("n");
    assert_eq!((worked.attempt, worked.state), (1, Some(NodeState::Succeeded)));
    let st = run.status().await.unwrap();
    assert_eq!(st.state, RunState::Succeeded, "{st:?}");
    assert_eq!(run.result::<u32>("n").await.unwrap(), Some(7));
}

/// A completion applied whose reply was lost, and sent again while the
/// attempt's lease holds, is known for the one recorded: the worker tells
/// the node's state (`Succeeded`), not a refused completion of a lost
/// lease (case `graph_completion_sent_again_answers_already` for the SPI).
pub async fn graph_completion_sent_again_after_a_lost_reply_is_recorded(h: &dyn Harness) {
    let ctx = Ctx::new(h);
    let (a, switch) = ctx.switchable_client("a", default_options()).await;
    let b = ctx.client("b").await;
    let once = |c: &Client| c.graph(G).node(Node::new("n").max_attempts(1)).build().unwrap();
    let run = once(&b).submit("r").await.unwrap();
    let wa = once(&a).worker().ttl(ms(30_000));
    let lose = switch.clone();
    let working = wa.work_one(move |_| async move {
        lose.losing_replies();
        Ok(7u32)
    });
    let heal = async {
        let lost = eventually(PROMPTLY, || async { (switch.replies_lost() > 0).then_some(()) });
        lost.await.expect("the completion applied, its reply lost");
        switch.on();
    };
    let (worked, ()) = tokio::join!(timeout(PROMPTLY, working), heal);
    let worked = worked.expect("answered in time");
    let worked = worked.expect("the completion went through").expect("n");
    assert_eq!(
        (worked.attempt, worked.state),
        (1, Some(NodeState::Succeeded)),
        "the completion sent again found its own recorded"
    );
    let st = run.status().await.unwrap();
    assert_eq!(st.state, RunState::Succeeded, "{st:?}");
    assert_eq!(run.result::<u32>("n").await.unwrap(), Some(7));

}
}

/// Graph `G` of one node `n` given three attempts, on `c`.
fn three_tries(c: &Client) -> Graph {
    c.graph(G)
        .node(Node::new("n").max_attempts(3))
        .build()
        .unwrap()
}

/// A worker on `b` takes node `n` of `run` again as attempt 2 and succeeds,
/// well before a 5 s lease would have ended the first attempt; the run
/// ends with `n` run twice.
async fn attempt_2_at_once(b: &Client, run: &GraphRun) -> Worked {
    let t0 = Instant::now();
    let mut wb = three_tries(b).worker();
    let second = within(
        wb.work_next(|ctx| async move { Ok(ctx.attempt()) }),
        "attempt 2",
    )
    .await;
    let took = t0.elapsed();
    assert!(took < ms(4000), "taken again only after {took:?}");
    assert_eq!(
        (second.attempt, second.state),
        (2, Some(NodeState::Succeeded))
    );
    let st = run.status().await.unwrap();
    assert_all_ended(&st, "r");
    assert_eq!(node(&st, "n").attempts, 2);
    second
}
